"""contrib/exim/exim4.conf end to end: a REAL Exim 4.96 daemon in front of mailwarden.

One module-scoped stack on SQLite: Exim (tests/servers.Exim, ``-bdf``) with the rendered
contrib/exim/exim4.conf, ``mailwarden policyd`` (RCPT and END-OF-MESSAGE through
``${readsocket}``), ``mailwarden lmtpd`` (the lmtp transport's unix socket), real clamd and
spamd (Exim's own av_scanner/spamd in the DATA ACL) and Dovecot with
contrib/dovecot/dovecot-sql.conf.ext.sqlite, read over IMAP.

Covered: mail to a mailbox, an alias and an alias-domain address lands in the Maildir
through lmtpd; an unknown recipient and an unauthenticated relay attempt are refused at
RCPT by policyd; EICAR is refused with the virus name; GTUBE gets ``X-Spam-Flag: YES``
(the sender's forged verdict removed) and lands in Junk for a folder-action mailbox.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import Cli
from tests.contrib import CONTRIB, placeholders, render
from tests.daemons import Daemon, mail_dirs
from tests.integration.test_policy_mta import Policyd
from tests.integration.test_stack_spam import PW, fetch, start_lmtpd

pytestmark = pytest.mark.integration

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
ALICE, BOB = "alice@example.test", "bob@example.test"


@dataclass
class Stack:
    base: Path
    exim: servers.Exim
    dovecot: servers.Dovecot
    clamd: servers.Clamd
    policyd: Policyd

    @property
    def mta(self) -> servers.Exim:
        return self.exim


def exim_values(
    url: str, root: Path, policy_port: int, lmtp: Path, clamd: servers.Clamd, spamd_port: int
) -> dict[str, str]:
    """Every placeholder of contrib/exim/exim4.conf (docs/contrib-exim.md)."""
    values = placeholders(url, mail_root=root)
    values.update(
        {
            "@POLICY_ADDR@": f"inet:127.0.0.1:{policy_port}",
            "@LMTP_SOCKET@": str(lmtp),
            "@CLAMD_SOCKET@": f"127.0.0.1 {clamd.port}",
            "@SPAMD_ADDR@": f"127.0.0.1 {spamd_port}",
        }
    )
    return values


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    missing = servers.missing_requirements(
        servers.Exim, servers.Dovecot, servers.Clamd, servers.Spamd
    )
    if missing or not servers.Exim.binary().is_file():
        pytest.skip("cannot run real servers: " + "; ".join(missing or ["no exim"]))
    base = servers.make_workdir("mw-exim-stack-")
    root, db, url = mail_dirs(base)
    clamd, spamd = servers.Clamd(base), servers.Spamd(base)
    started: list[servers._Server] = []
    lmtpd: Daemon | None = None
    policyd: Policyd | None = None
    try:
        for server in (clamd, spamd):
            server.start()
            started.append(server)
        cfg = base / "mailwarden.toml"
        cfg.write_text(
            f'[database]\nurl = "{url}"\n[mail]\nroot = "{root}"\nuid = 5000\ngid = 5000\n'
            f'[lda]\nlmtp_listen = []\nmetrics_dir = "{base / "metrics"}"\n'
            "[policy]\ncache_ttl = 1.0\nrequest_timeout = 5.0\n"
        )
        cli = Cli(cfg, url)
        cli.ok("db", "init")
        cli.ok("domain", "add", "example.test")
        cli.ok("domain", "add", "alias.test", "--alias-of", "example.test")
        for user in (ALICE, BOB):
            cli.ok("user", "add", "--password-stdin", user, stdin=PW + "\n")
        cli.ok("alias", "add", "info@example.test", ALICE)
        cli.ok("spam", "set", ALICE, "--threshold", "5", "--action", "folder")
        for path in (db, *db.parent.iterdir()):
            os.chmod(path, 0o666)  # Exim (Debian-exim) and dovecot's auth worker read it
        os.chmod(db.parent, 0o777)

        policyd = Policyd(cfg, base / "policyd.log")
        sock = base / "lmtp.sock"
        lmtpd = start_lmtpd(cfg, sock, base / "lmtpd.log")
        values = exim_values(url, root, policyd.port, sock, clamd, spamd.port)
        conf = render((CONTRIB / "exim" / "exim4.conf").read_text(), values)
        exim = servers.Exim(base, "MAILWARDEN_NO_INSTANCE_OPTIONS = yes\n" + conf)
        sql_conf = render((CONTRIB / "dovecot/dovecot-sql.conf.ext.sqlite").read_text(), values)
        dovecot = servers.Dovecot(base, sql_conf, root)
        dovecot.start()
        started.append(dovecot)
        exim.start_daemon()
        started.append(exim)
        yield Stack(base, exim, dovecot, clamd, policyd)
    finally:
        for server in reversed(started):
            server.stop()
        if lmtpd is not None:
            lmtpd.stop()
        if policyd is not None:
            policyd.stop()
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


def message(rcpts: list[str], subject: str, body: str, headers: str = "") -> bytes:
    return (
        f"From: sender@outside.test\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{time.time_ns()}@outside.test>\r\n{headers}\r\n{body}\r\n"
    ).encode()


def send(
    stack: Stack, rcpts: list[str], subject: str, body: str, headers: str = ""
) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", stack.exim.port, timeout=60) as smtp:
        try:
            smtp.sendmail("sender@outside.test", rcpts, message(rcpts, subject, body, headers))
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode()
    return 250, "ok"


def rcpt_replies(stack: Stack, rcpts: list[str]) -> list[tuple[int, str]]:
    with smtplib.SMTP("127.0.0.1", stack.exim.port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        code, msg = smtp.mail("sender@outside.test")
        assert code == 250, msg
        out = []
        for rcpt in rcpts:
            code, msg = smtp.rcpt(rcpt)
            out.append((code, msg.decode(errors="replace")))
        return out


def test_config_is_valid_and_routes_through_sql(stack: Stack) -> None:
    proc = stack.exim.run("-bV")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for address, router in (
        (ALICE, "mw_mailboxes"),
        ("alice+tag@example.test", "mw_mailboxes"),
        ("info@example.test", "mw_mailboxes"),
        ("bob@alias.test", "mw_mailboxes"),
    ):
        out = stack.exim.run("-bt", address)
        assert out.returncode == 0 and "transport = mailwarden_lmtp" in out.stdout, out
        assert f"router = {router}" in out.stdout, out.stdout
    assert stack.exim.run("-bt", "ghost@example.test").returncode != 0


def test_delivered_through_lmtpd_and_read_over_imap(stack: Stack) -> None:
    rcpts = [ALICE, "info@example.test", "bob@alias.test"]
    assert send(stack, rcpts, "hello exim", "plain words\r\n") == (250, "ok")
    msg = fetch(stack, BOB, "INBOX", "hello exim")
    assert msg["Delivered-To"] == BOB
    assert msg.get_all("X-Virus-Scanned") == ["mailwarden (ClamAV)"]
    assert msg["X-Spam-Flag"] == "NO"
    fetch(stack, ALICE, "INBOX", "hello exim")  # alice and info@ -> one copy (same rcpt)
    log = stack.exim.log_text()
    for rcpt in (ALICE, BOB):
        assert re.search(rf'T=mailwarden_lmtp C="250 2\.0\.0 <{re.escape(rcpt)}>', log), log


def test_unknown_recipient_and_relay_refused_at_rcpt(stack: Stack) -> None:
    replies = rcpt_replies(stack, ["ghost@example.test", "victim@else.test", BOB])
    assert replies[0][0] == 550 and "5.1.1" in replies[0][1], replies
    assert replies[1][0] == 554 and "5.7.1" in replies[1][1], replies
    assert "Relay access denied" in replies[1][1], replies
    assert replies[2][0] == 250, replies


def test_eicar_refused_with_virus_name(stack: Stack) -> None:
    code, text = send(stack, [BOB], "eicar", stack.clamd.eicar.decode())
    assert code == 554, text
    assert f"5.7.1 Virus {stack.clamd.signature_name} detected" in text


def test_gtube_flagged_and_filed_in_junk(stack: Stack) -> None:
    forged = "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-50.0 required=5.0\r\n"
    assert send(stack, [ALICE], "gtube exim", GTUBE, forged) == (250, "ok")
    msg = fetch(stack, ALICE, "Junk", "gtube exim")
    assert msg.get_all("X-Spam-Flag") == ["YES"]
    assert len(msg.get_all("X-Spam-Status")) == 1
    assert msg["X-Spam-Status"].startswith("Yes, score=")
    assert float(msg["X-Spam-Score"]) >= 1000


def acl_block(text: str, name: str) -> str:
    """The ACL ``name:`` of an Exim configure, up to the next blank line."""
    match = re.search(rf"^{name}:\n(?:.+\n?)*", text, re.MULTILINE)
    assert match, name
    return match.group(0).rstrip()


def test_acls_are_the_include_files_copies() -> None:
    whole = (CONTRIB / "exim" / "exim4.conf").read_text()
    for part, names in (
        ("policy.conf", ("acl_mailwarden_mail", "acl_mailwarden_rcpt", "acl_mailwarden_data")),
        ("scan.conf", ("acl_mailwarden_scan",)),
    ):
        text = (CONTRIB / "exim" / part).read_text()
        for name in names:
            assert acl_block(whole, name) == acl_block(text, name), (part, name)


@pytest.mark.parametrize("socket", [False, True], ids=["mysql-tcp", "mysql-socket"])
def test_mysql_variant_is_valid(stack: Stack, socket: bool) -> None:
    url = "mysql://mw_postfix:Xk3pw@127.0.0.1:3306/mailwarden"
    if socket:
        url += "?unix_socket=/run/mysqld/mysqld.sock"
    values = exim_values(url, stack.base / "vmail", 10040, stack.base / "l.sock", stack.clamd, 783)
    conf = render((CONTRIB / "exim" / "exim4.conf").read_text(), values)
    assert "\nMW_SQL = mysql\nMW_QUOTE = quote_mysql\n" in conf
    active = [line for line in conf.splitlines() if line.startswith("hide mysql_servers")]
    assert len(active) == 1 and ("localhost(/run/mysqld" in active[0]) == socket, active
    exim = servers.Exim(
        stack.base / f"mysql-{socket}", "MAILWARDEN_NO_INSTANCE_OPTIONS = yes\n" + conf
    )
    proc = exim.run("-bV")
    assert proc.returncode == 0, proc.stdout + proc.stderr
