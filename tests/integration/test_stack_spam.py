"""The whole Postfix stack on spam and viruses: milter + lmtpd + Dovecot, all real.

One module-scoped stack on SQLite:

- Postfix with the contrib SQL maps (contrib/postfix/main.cf.maps, sqlite/*.cf), the
  mailwarden milter as in contrib/postfix/main.cf.milter and
  ``virtual_transport = lmtp:unix:<lmtpd socket>`` (contrib/postfix/main.cf.lda);
- ``mailwarden milter`` talking to real clamd (local EICAR signature) and real spamd;
- ``mailwarden lmtpd`` delivering into Maildirs, filing spam per recipient;
- Dovecot with contrib/dovecot/dovecot-sql.conf.ext.sqlite, read over IMAP.

One GTUBE message to two mailboxes: the one with threshold 5 (folder action) gets it in
Junk (subscribed), the one with threshold 2000 in INBOX; the sender's forged
``X-Spam-Flag: NO`` is gone from both. Clean mail reaches INBOX with X-Virus-Scanned;
EICAR is refused at end of DATA with 554 and the virus name.
"""

from __future__ import annotations

import email
import imaplib
import os
import shutil
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.conftest import Cli
from tests.contrib import CONTRIB, main_cf_settings, placeholders, render, render_file
from tests.daemons import Daemon, mail_dirs, start_daemon
from tests.integration.test_milter_protocol import MilterProcess, start_milter

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
PW = "s3cret-pw"
ALICE, BOB = "alice@example.test", "bob@example.test"
MAPS = (
    "virtual_mailbox_domains",
    "virtual_alias_domains",
    "virtual_mailbox_maps",
    "virtual_alias_maps",
    "virtual_alias_domain_maps",
    "relay_domains",
    "transport_maps",
    "smtpd_sender_login_maps",
)


@dataclass
class Stack:
    base: Path
    postfix: servers.Postfix
    dovecot: servers.Dovecot
    clamd: servers.Clamd

    @property
    def mta(self) -> servers.Postfix:
        return self.postfix


def start_lmtpd(cfg: Path, sock: Path, log: Path) -> Daemon:
    return start_daemon("lmtpd", cfg, f"unix:{sock}", log, args=["--metrics", "none"])


def set_threshold(cli: Cli, db: Path, address: str, threshold: int) -> None:
    """``spam set ADDRESS --threshold N --action folder`` through the CLI."""
    cli.ok("spam", "set", address, "--threshold", str(threshold), "--action", "folder")


def postfix_settings(values: dict[str, str], milter_port: int, lmtp_sock: Path) -> dict[str, str]:
    """main.cf.maps + main.cf.milter + main.cf.lda, rendered and pointed at this stack."""
    settings = main_cf_settings(render((CONTRIB / "postfix/main.cf.maps").read_text(), values))
    milter = main_cf_settings((CONTRIB / "postfix/main.cf.milter").read_text())
    milter["smtpd_milters"] = milter["smtpd_milters"].replace(
        "unix:mailwarden-milter/milter.sock", f"inet:127.0.0.1:{milter_port}"
    )
    settings.update(milter)
    lda = main_cf_settings((CONTRIB / "postfix/main.cf.lda").read_text())
    lda["virtual_transport"] = f"lmtp:unix:{lmtp_sock}"
    settings.update(lda)
    return settings


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    missing = servers.missing_requirements(
        servers.Postfix, servers.Dovecot, servers.Clamd, servers.Spamd
    )
    if missing:
        pytest.skip("cannot run real servers: " + "; ".join(missing))
    base = servers.make_workdir("mw-stack-spam-")
    root, db, url = mail_dirs(base)
    clamd, spamd = servers.Clamd(base), servers.Spamd(base)
    procs: list[Daemon] = []
    milter: MilterProcess | None = None
    started: list[servers._Server] = []
    try:
        for server in (clamd, spamd):
            server.start()
            started.append(server)
        cfg = base / "mailwarden.toml"
        cfg.write_text(
            f'[database]\nurl = "{url}"\n[mail]\nroot = "{root}"\nuid = 5000\ngid = 5000\n'
            f'[lda]\nlmtp_listen = []\nmetrics_dir = "{base / "metrics"}"\n'
        )
        cli = Cli(cfg, url)
        cli.ok("db", "init")
        cli.ok("domain", "add", "example.test")
        for user in (ALICE, BOB):
            cli.ok("user", "add", "--password-stdin", user, stdin=PW + "\n")
        cli.ok("spam", "set", ALICE, "--threshold", "5", "--action", "folder")
        set_threshold(cli, db, BOB, 2000)
        for path in (db, *db.parent.iterdir()):
            os.chmod(path, 0o666)  # proxymap (postfix) and dovecot's auth worker read it
        os.chmod(db.parent, 0o777)

        milter = start_milter(
            base, "milter", url, clamd=f"unix:{clamd.socket}", spamd=f"127.0.0.1:{spamd.port}"
        )
        sock = base / "lmtp.sock"
        procs.append(start_lmtpd(cfg, sock, base / "lmtpd.log"))

        postfix = servers.Postfix(base)
        map_dir = postfix.config_dir / "mailwarden"
        values = placeholders(url, mail_root=root, postfix_dir=map_dir)
        for name in MAPS:
            path = render_file(
                f"postfix/sqlite/{name}.cf", values, map_dir / f"{name}.cf", group="postfix"
            )
            past = time.time() - 60  # Postfix pauses before reading a file changed within 1 s
            os.utime(path, (past, past))
        postfix.postconf(
            "-e", *(f"{k}={v}" for k, v in postfix_settings(values, milter.port, sock).items())
        )
        sql_conf = render((CONTRIB / "dovecot/dovecot-sql.conf.ext.sqlite").read_text(), values)
        dovecot = servers.Dovecot(base, sql_conf, root)
        for server in (postfix, dovecot):
            server.start()
            started.append(server)
        yield Stack(base, postfix, dovecot, clamd)
    finally:
        for server in reversed(started):
            server.stop()
        for proc in procs:
            proc.stop()
        if milter is not None:
            milter.stop()
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


def send(
    stack: Stack, rcpts: list[str], subject: str, body: str, headers: str = ""
) -> tuple[int, str]:
    msg = (
        f"From: sender@outside.test\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{time.time_ns()}@outside.test>\r\n{headers}\r\n{body}\r\n"
    )
    with smtplib.SMTP("127.0.0.1", stack.postfix.smtp_port, timeout=60) as smtp:
        try:
            smtp.sendmail("sender@outside.test", rcpts, msg.encode())
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode()
    return 250, "ok"


def fetch(stack: Any, user: str, folder: str, subject: str, timeout: float = 20.0) -> Message:
    """The message with ``subject`` in ``user``'s folder, read over IMAP (waits for it)."""
    deadline = time.monotonic() + timeout
    while True:
        imap = imaplib.IMAP4("127.0.0.1", stack.dovecot.imap_port)
        try:
            imap.login(user, PW)
            typ, _ = imap.select(f'"{folder}"', readonly=True)
            if typ == "OK":
                _, found = imap.search(None, "SUBJECT", f'"{subject}"')
                ids = found[0].split()
                if ids:
                    assert len(ids) == 1, (user, folder, subject, ids)
                    _, data = imap.fetch(ids[0], "(BODY.PEEK[])")
                    raw = next(part[1] for part in data if isinstance(part, tuple))
                    return email.message_from_bytes(raw)
        finally:
            imap.logout()
        if time.monotonic() > deadline:
            raise AssertionError(f"no {subject!r} in {user}/{folder}\n{stack.mta.log_tail()}")
        time.sleep(0.2)


def count(stack: Stack, user: str, folder: str, subject: str) -> int:
    imap = imaplib.IMAP4("127.0.0.1", stack.dovecot.imap_port)
    try:
        imap.login(user, PW)
        typ, _ = imap.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            return 0
        _, found = imap.search(None, "SUBJECT", f'"{subject}"')
        return len(found[0].split())
    finally:
        imap.logout()


def folders(stack: Stack, user: str, command: str) -> list[bytes]:
    imap = imaplib.IMAP4("127.0.0.1", stack.dovecot.imap_port)
    try:
        imap.login(user, PW)
        typ, data = getattr(imap, command)()
        assert typ == "OK", data
        return [line for line in data if isinstance(line, bytes)]
    finally:
        imap.logout()


def test_gtube_junk_for_one_inbox_for_other_forged_flag_removed(stack: Stack) -> None:
    forged = "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-50.0 required=5.0\r\n"
    assert send(stack, [ALICE, BOB], "gtube", GTUBE, forged) == (250, "ok")
    junk = fetch(stack, ALICE, "Junk", "gtube")
    inbox = fetch(stack, BOB, "INBOX", "gtube")
    for msg in (junk, inbox):
        assert msg.get_all("X-Spam-Flag") == ["YES"]
        assert len(msg.get_all("X-Spam-Status")) == 1
        assert msg["X-Spam-Status"].startswith("Yes, score=")
        assert float(msg["X-Spam-Score"]) >= 1000
        assert msg.get_all("X-Virus-Scanned") == ["mailwarden (ClamAV)"]
    assert count(stack, ALICE, "INBOX", "gtube") == 0
    assert count(stack, BOB, "Junk", "gtube") == 0
    assert any(
        b'"Junk"' in line or line.endswith(b" Junk") for line in folders(stack, ALICE, "list")
    )
    assert any(
        b'"Junk"' in line or line.endswith(b" Junk") for line in folders(stack, ALICE, "lsub")
    )


def test_clean_mail_inbox_with_x_virus_scanned(stack: Stack) -> None:
    assert send(stack, [ALICE], "clean", "hello, nothing to see\r\n") == (250, "ok")
    msg = fetch(stack, ALICE, "INBOX", "clean")
    assert msg.get_all("X-Virus-Scanned") == ["mailwarden (ClamAV)"]
    assert msg["X-Spam-Flag"] == "NO"
    assert msg["Delivered-To"] == ALICE
    assert count(stack, ALICE, "Junk", "clean") == 0


def test_eicar_refused_with_virus_name(stack: Stack) -> None:
    code, text = send(stack, [ALICE, BOB], "eicar", stack.clamd.eicar.decode())
    assert code == 554, text
    assert f"5.7.1 Virus {stack.clamd.signature_name} detected" in text
    assert count(stack, ALICE, "INBOX", "eicar") == 0
