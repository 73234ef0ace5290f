"""contrib/dovecot/dovecot-2.4/mailwarden.conf against a real Dovecot 2.4.

Debian 12 ships Dovecot 2.3; scripts/install-deps.sh builds a Debian 13 ("trixie",
Dovecot 2.4.1) chroot with debootstrap under /opt/mailwarden-test/trixie
(``MAILWARDEN_DOVECOT24_ROOT``). Dovecot runs inside it with the rendered contrib file and
test listeners on 127.0.0.1 (the chroot shares the network), reading either a SQLite
database inside the chroot or the test MariaDB over 127.0.0.1 (with an account that may
only read ``dovecot_users`` and write ``dovecot_quota`` and ``dovecot_last_login``, as
contrib/README.md says), and a mail root inside the chroot; the mailwarden CLI and
delivery agent on the host write the same files.

What it shows: the file parses (``doveconf``); a CLI-created user authenticates (and a
wrong password or an IMAP-less group does not); mail delivered by ``mailwarden deliver``
is read over IMAP and POP3; ``doveadm quota get`` reports what ``maildirsize`` holds; an
IMAP expunge reaches ``quota_usage`` through quota_clone and the schema's triggers; IMAP
and POP3 logins reach ``mailboxes.last_login`` through the last_login plugin.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from mailwarden.store.db import Database, parse_url
from tests.conftest import Cli, run_bin, write_config
from tests.contrib import CONTRIB, placeholders, render
from tests.integration.test_dovecot_quota_clone import (
    imap_keep_first,
    quota_table,
    usage,
    wait_for,
)
from tests.servers import banner_ok, free_port

pytestmark = pytest.mark.integration

ROOT = Path(os.environ.get("MAILWARDEN_DOVECOT24_ROOT", "/opt/mailwarden-test/trixie"))
USER, PASSWORD = "alice@example.test", "Alice's pw 2.4"
NOIMAP = "pop-only@example.test"


@dataclass
class Stack:
    cli: Cli
    db: Database
    config: Path
    inside: str  # the work directory as Dovecot sees it (inside the chroot)
    host: Path  # the same directory from the host
    conf: str  # dovecot.conf, chroot path
    imap_port: int
    pop3_port: int

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["chroot", str(ROOT), *args], capture_output=True, text=True, timeout=60, check=False
        )

    def doveadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("/usr/bin/doveadm", "-c", self.conf, *args)


def _test_settings(inside: str, imap: int, pop3: int) -> str:
    """Dovecot 2.4 settings for a private instance (2.4 names: auth_allow_cleartext ...)."""
    return f"""
# --- test instance (tests/integration/test_dovecot24.py) ---
base_dir = {inside}/run
state_dir = {inside}/state
instance_name = mw24-{secrets.token_hex(3)}
log_path = {inside}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
auth_allow_cleartext = yes
auth_failure_delay = 0
first_valid_uid = 5000
last_valid_uid = 5000
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


def _dovecot_url(url: str, server: Any) -> str:
    """SQLite: the same file as seen from the chroot. MySQL: one account for passdb,
    userdb and the quota_clone dict (2.4 has one connection block for all three)."""
    if not url.startswith("mysql:"):
        return url
    db = parse_url(url)
    user, password = f"{db.database}_dc24"[:80], secrets.token_hex(12)
    stmts = []
    for host in ("127.0.0.1", "localhost"):
        account = f"'{user}'@'{host}'"
        stmts += [
            f"CREATE OR REPLACE USER {account} IDENTIFIED BY '{password}'",
            f"GRANT SELECT ON `{db.database}`.`dovecot_users` TO {account}",
            f"GRANT SELECT, INSERT, UPDATE ON `{db.database}`.`dovecot_quota` TO {account}",
            f"GRANT SELECT, INSERT, UPDATE ON `{db.database}`.`dovecot_last_login` TO {account}",
        ]
    server.execute(";\n".join(stmts) + ";")
    return f"mysql://{user}:{password}@{db.host}:{db.port}/{quote(db.database)}"


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    if os.geteuid() != 0 or not (ROOT / "usr/sbin/dovecot").exists():
        pytest.skip(f"no Dovecot 2.4 chroot at {ROOT} (scripts/install-deps.sh builds it)")
    name = f"mw24-{secrets.token_hex(4)}"
    inside = f"/srv/{name}"
    host = ROOT / "srv" / name
    host.mkdir(parents=True, mode=0o755)
    for sub in ("run", "state"):
        (host / sub).mkdir(mode=0o755)
    mail_root = host / "vmail"
    mail_root.mkdir(mode=0o755)
    os.chown(mail_root, 5000, 5000)
    db_file = host / "mw.db"
    server = None
    if request.param == "mysql":
        server = request.getfixturevalue("mariadb")
        url = server.create_database("mwdc24", "mwdc24", "admin pw'x")
    else:
        url = f"sqlite:///{db_file}"
    config = write_config(host / "mw.toml", url, mail_root)
    cli = Cli(config, url)
    cli.ok("db", "init")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", USER, "--password-stdin", "--quota", "1M", stdin=PASSWORD)
    cli.ok("group", "add", "nomail", "--no-imap")
    cli.ok("user", "add", NOIMAP, "--password-stdin", "--group", "nomail", stdin="pop pw")
    if server is None:
        os.chmod(db_file, 0o644)
        dovecot_url = f"sqlite:///{inside}/mw.db"  # the dict process (root) writes it
    else:
        dovecot_url = _dovecot_url(url, server)

    values = placeholders(dovecot_url, mail_root=f"{inside}/vmail")
    conf = render((CONTRIB / "dovecot/dovecot-2.4/mailwarden.conf").read_text(), values)
    imap, pop3 = free_port(), free_port()
    (host / "dovecot.conf").write_text(conf + _test_settings(inside, imap, pop3))
    s = Stack(cli, Database(url), config, inside, host, f"{inside}/dovecot.conf", imap, pop3)
    try:
        # The master daemonises and keeps its output open: a file, not a pipe.
        with open(host / "start.log", "wb") as out:
            started = subprocess.run(
                ["chroot", str(ROOT), "/usr/sbin/dovecot", "-c", s.conf],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            )
        assert started.returncode == 0, (host / "start.log").read_text() + _log(s)
        deadline = time.monotonic() + 30
        while not (banner_ok(imap, b"* OK") and banner_ok(pop3, b"+OK")):
            assert time.monotonic() < deadline, "Dovecot 2.4 did not listen\n" + _log(s)
            time.sleep(0.2)
        yield s
    finally:
        s.run("/usr/bin/doveadm", "-c", s.conf, "stop")
        s.db.close()
        time.sleep(0.5)
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(host, ignore_errors=True)


def _log(s: Stack) -> str:
    path = s.host / "dovecot.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def deliver(s: Stack, n: int, size: int = 1) -> int:
    msg = (
        f"From: someone@outside.test\r\nTo: {USER}\r\nSubject: dovecot 2.4 test {n}\r\n"
        f"Message-ID: <d24-{n}.{time.monotonic_ns()}@outside.test>\r\n\r\n"
        + "0123456789abcdef\r\n"
        * size
    ).encode()
    proc = run_bin(
        "--config", str(s.config), "deliver", "-f", "someone@outside.test", "-d", USER, stdin=msg
    )
    assert proc.returncode in (0, 75), proc.stdout + proc.stderr
    return proc.returncode


def maildirsize(s: Stack) -> tuple[int, int]:
    lines = (s.host / "vmail/example.test/alice/maildirsize").read_text().splitlines()[1:]
    return sum(int(x.split()[0]) for x in lines), sum(int(x.split()[1]) for x in lines)


def doveadm_quota(s: Stack) -> dict[str, int]:
    return quota_table(s.doveadm("-f", "tab", "quota", "get", "-u", USER))


def test_the_file_parses_as_dovecot_24(stack: Stack) -> None:
    version = stack.run("/usr/sbin/dovecot", "--version")
    assert version.stdout.startswith("2.4"), version.stdout
    conf = stack.run("/usr/bin/doveconf", "-c", stack.conf, "-n")
    assert conf.returncode == 0, conf.stderr
    assert "mail_driver = maildir" in conf.stdout
    if stack.cli.url.startswith("sqlite:"):
        assert f"sqlite_path = {stack.inside}/mw.db" in conf.stdout
    else:
        assert "sql_driver = mysql" in conf.stdout


def test_cli_created_user_authenticates(stack: Stack) -> None:
    assert stack.doveadm("auth", "test", USER, PASSWORD).returncode == 0
    assert stack.doveadm("auth", "test", "ALICE@example.test", PASSWORD).returncode == 0
    assert stack.doveadm("auth", "test", USER, "wrong").returncode == 77
    assert stack.doveadm("auth", "test", "nobody@example.test", PASSWORD).returncode == 77
    # the group without IMAP: refused for imap, allowed for pop3
    assert stack.doveadm("auth", "test", "-x", "service=imap", NOIMAP, "pop pw").returncode == 77
    assert stack.doveadm("auth", "test", "-x", "service=pop3", NOIMAP, "pop pw").returncode == 0


def test_delivered_mail_is_read_over_imap_and_pop3(stack: Stack) -> None:
    assert deliver(stack, 1) == 0
    with imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=30) as imap:
        imap.login(USER, PASSWORD)
        assert imap.select("INBOX")[0] == "OK"
        found = imap.search(None, "SUBJECT", '"dovecot 2.4 test 1"')[1][0].split()
        assert len(found) == 1
        body = imap.fetch(found[0], "(BODY.PEEK[])")[1][0]
        assert isinstance(body, tuple) and b"Delivered-To: alice@example.test" in body[1]
        imap.logout()
    pop = poplib.POP3("127.0.0.1", stack.pop3_port, timeout=30)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.stat()[0] >= 1
    finally:
        pop.quit()


def test_quota_matches_maildirsize_and_expunge_reaches_quota_usage(stack: Stack) -> None:
    for n in range(2, 6):
        assert deliver(stack, n, size=200) == 0
    want = doveadm_quota(stack)
    size, count = maildirsize(stack)
    assert want["MESSAGE"] == count
    assert want["STORAGE"] == -(-size // 1024)  # doveadm shows KiB, rounded up

    assert imap_keep_first(stack.imap_port, USER, PASSWORD) == count

    now = wait_for(
        "quota_usage to drop to one message (quota_clone)",
        lambda: (u := usage(stack.db, USER)) is not None and u["messages"] == 1 and u,
    )
    assert (now["bytes"], now["messages"]) == maildirsize(stack)
    assert doveadm_quota(stack)["MESSAGE"] == 1


def test_imap_and_pop3_logins_reach_last_login(stack: Stack) -> None:
    """The last_login part of the file: each login protocol writes dovecot_last_login,
    the schema 0005 triggers copy it into mailboxes.last_login, the CLI shows it."""
    from tests.integration.test_dovecot_last_login import PAST, last_login, recorded

    def plugins(protocol: str) -> str:
        return stack.run(
            "/usr/bin/doveconf", "-c", stack.conf, "-f", f"protocol={protocol}", "mail_plugins"
        ).stdout

    # Loaded for the login protocols only; imap_quota stays beside it.
    assert "last_login = yes" in plugins("pop3")
    assert {"imap_quota = yes", "last_login = yes"} <= set(
        map(str.strip, plugins("imap").splitlines())
    )
    assert "last_login" not in plugins("lmtp") + plugins("doveadm")
    with stack.db.transaction() as tx:
        tx.execute("UPDATE mailboxes SET last_login = ?", (PAST,))
    for service, login in (("imap", _imap_login), ("pop3", _pop3_login)):
        start = int(time.time())
        login(stack)
        when = wait_for(
            f"a {service} login in dovecot_last_login",
            lambda s=service: (t := recorded(stack.db).get((USER, s))) and t >= start and t,
        )
        assert last_login(stack.db) == when <= time.time() + 1
    assert last_login(stack.db, NOIMAP) == PAST  # nobody else's
    shown = stack.cli.ok("user", "show", USER, "--json")
    assert '"last_login": null' not in shown, shown


def _imap_login(s: Stack) -> None:
    with imaplib.IMAP4("127.0.0.1", s.imap_port, timeout=30) as imap:
        imap.login(USER, PASSWORD)
        imap.logout()


def _pop3_login(s: Stack) -> None:
    pop = poplib.POP3("127.0.0.1", s.pop3_port, timeout=30)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
    finally:
        pop.quit()


def test_the_four_folders_are_there_and_subscribed(stack: Stack) -> None:
    """The namespace inbox block of the file: Drafts, Sent, Trash and Junk exist and are
    subscribed at a login (auto = subscribe), with their special-use flags."""
    with imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=30) as imap:
        imap.login(USER, PASSWORD)
        listed = b"\n".join(x for x in imap.list()[1] if isinstance(x, bytes)).decode()
        subscribed = b"\n".join(x for x in imap.lsub()[1] if isinstance(x, bytes)).decode()
        imap.logout()
    for name in ("Drafts", "Sent", "Trash", "Junk"):
        assert f"\\{name}" in listed and name in subscribed, (listed, subscribed)
