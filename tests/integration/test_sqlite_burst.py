"""A burst of mail through the whole Postfix stack: the database never locks anyone out.

One module-scoped stack per database (SQLite as ``mailwarden setup`` leaves it, and
MariaDB):

- Postfix with the contrib maps behind ``proxy:`` (contrib/postfix/main.cf.maps), the
  policy service (main.cf.policy), the milter (main.cf.milter) and
  ``virtual_transport = lmtp:unix:<lmtpd socket>`` (main.cf.lda);
- ``mailwarden policyd`` with a client rate limit, so every accepted message is counted
  (a write per message);
- ``mailwarden milter`` with real clamd, counting traffic per domain (a write per
  message); spamd is left out (``spamd_failure = accept``): it adds minutes, no writes;
- ``mailwarden lmtpd`` writing ``quota_usage``;
- Dovecot with the contrib SQL passdb/userdb, logged into over IMAP during the burst.

For SQLite the database file, its directory and its ``-wal``/``-shm`` files get the
owner, group and modes ``setup`` gives them (``setup.accounts.share_sqlite``): Postfix's
proxymap reads it as user ``postfix``, not as root.

200 messages from 20 parallel SMTP sessions (10 each, one recipient each, 20 mailboxes)
must give 200 ``250`` replies, 200 ``status=sent``, no ``status=deferred`` or
``status=bounced``, and no ``database is locked`` (nor any ``fatal:``) in Postfix's or
Dovecot's log. The numbers are printed (``pytest -s``): elapsed time, largest Postfix
``delay=``, fatals.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import smtplib
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import Cli
from tests.contrib import (
    CONTRIB,
    DOVECOT_VIEWS,
    POSTFIX_VIEWS,
    main_cf_settings,
    placeholders,
    reader_url,
    render,
    render_file,
)
from tests.daemons import Daemon, start_daemon
from tests.integration.test_milter_protocol import MilterProcess, start_milter

pytestmark = pytest.mark.integration

PW = "s3cret-pw"
SESSIONS, PER_SESSION, MAILBOXES = 20, 10, 20
TOTAL = SESSIONS * PER_SESSION
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


def user(n: int) -> str:
    return f"u{n:02d}@example.test"


@dataclass
class Stack:
    dialect: str
    base: Path
    root: Path
    db_path: Path | None
    postfix: servers.Postfix
    dovecot: servers.Dovecot
    daemons: list[Daemon]
    milter: MilterProcess


def _postfix_settings(values: dict[str, str], policy: int, milter: int, lmtp: Path) -> list[str]:
    settings = main_cf_settings(render((CONTRIB / "postfix/main.cf.maps").read_text(), values))
    for name in ("main.cf.policy", "main.cf.milter", "main.cf.lda"):
        settings.update(main_cf_settings((CONTRIB / "postfix" / name).read_text()))
    out = []
    for key, value in settings.items():
        value = value.replace("inet:127.0.0.1:10040", f"inet:127.0.0.1:{policy}")
        value = value.replace("unix:mailwarden-milter/milter.sock", f"inet:127.0.0.1:{milter}")
        out.append(f"{key}={value}")
    out += [f"virtual_transport=lmtp:unix:{lmtp}", "smtpd_client_connection_count_limit=0"]
    return out


def _database(dialect: str, base: Path, request: pytest.FixtureRequest) -> tuple[str, Path | None]:
    if dialect == "sqlite":
        dbdir = base / "db"
        dbdir.mkdir()
        return f"sqlite:///{dbdir / 'mailwarden.db'}", dbdir / "mailwarden.db"
    server = request.getfixturevalue("mariadb")
    return server.create_database("mwburst", "mwburst", "burst pw"), None


def _accounts(cli: Cli) -> None:
    cli.ok("db", "init")
    cli.ok("domain", "add", "example.test")
    for n in range(MAILBOXES):
        cli.ok("user", "add", "--password-stdin", user(n), stdin=PW + "\n")
    # Every accepted message is counted against the client network (a policyd write).
    cli.ok("ratelimit", "set", "127.0.0.0/8", "--per", "hour", "--messages", "100000")


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    missing = servers.missing_requirements(servers.Postfix, servers.Dovecot, servers.Clamd)
    if missing:
        pytest.skip("cannot run real servers: " + "; ".join(missing))
    dialect = str(request.param)
    base = servers.make_workdir(f"mw-burst-{dialect}-")
    root = base / "vmail"
    root.mkdir()
    os.chown(root, servers.VMAIL_UID, servers.VMAIL_GID)
    url, db_path = _database(dialect, base, request)
    started: list[servers._Server] = []
    daemons: list[Daemon] = []
    milter: MilterProcess | None = None
    try:
        clamd = servers.Clamd(base)
        clamd.start()
        started.append(clamd)
        cfg = base / "mailwarden.toml"
        cfg.write_text(
            f'[database]\nurl = "{url}"\n[mail]\nroot = "{root}"\nuid = 5000\ngid = 5000\n'
            f'[lda]\nlmtp_listen = []\nmetrics_dir = "{base / "metrics"}"\n'
        )
        cli = Cli(cfg, url)
        _accounts(cli)
        if db_path is not None:
            from mailwarden.setup.accounts import share_sqlite

            share_sqlite(url)  # root:postfix, as setup leaves it
        milter = start_milter(
            base,
            "milter",
            url,
            clamd=f"unix:{clamd.socket}",
            spamd=f"127.0.0.1:{servers.free_port()}",
            spamd_failure="accept",
        )
        policy_port = servers.free_port()
        daemons.append(
            start_daemon(
                "policyd",
                cfg,
                f"127.0.0.1:{policy_port}",
                base / "policyd.log",
                args=["--metrics", f"127.0.0.1:{servers.free_port()}"],
            )
        )
        sock = base / "lmtp.sock"
        daemons.append(
            start_daemon(
                "lmtpd",
                cfg,
                f"unix:{sock}",
                base / "lmtpd.log",
                args=["--metrics", f"127.0.0.1:{servers.free_port()}"],
            )
        )
        server = request.getfixturevalue("mariadb") if dialect == "mysql" else None
        postfix = servers.Postfix(base)
        map_dir = postfix.config_dir / "mailwarden"
        values = placeholders(
            reader_url(url, server, "postfix", POSTFIX_VIEWS), mail_root=root, postfix_dir=map_dir
        )
        for name in MAPS:
            path = render_file(
                f"postfix/{dialect}/{name}.cf", values, map_dir / f"{name}.cf", group="postfix"
            )
            past = time.time() - 60  # Postfix pauses before reading a file changed within 1 s
            os.utime(path, (past, past))
        postfix.postconf("-e", *_postfix_settings(values, policy_port, milter.port, sock))
        dovecot_values = placeholders(
            reader_url(url, server, "dovecot", DOVECOT_VIEWS), mail_root=root
        )
        sql_conf = render(
            (CONTRIB / f"dovecot/dovecot-sql.conf.ext.{dialect}").read_text(), dovecot_values
        )
        dovecot = servers.Dovecot(base, sql_conf, root)
        for srv in (postfix, dovecot):
            srv.start()
            started.append(srv)
        yield Stack(dialect, base, root, db_path, postfix, dovecot, daemons, milter)
    finally:
        for running in reversed(started):
            running.stop()
        for daemon in daemons:
            daemon.stop()
        if milter is not None:
            milter.stop()
        if dialect == "mysql":
            request.getfixturevalue("mariadb").drop_database("mwburst")
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


def _session(stack: Stack, session: int) -> list[int]:
    """One SMTP connection, PER_SESSION transactions; the final reply code of each.

    A timeout or a dropped connection ends the session: its remaining messages count as
    refused (code 0), so a stalled Postfix fails the test within a minute, not hours.
    """
    codes: list[int] = []
    try:
        with smtplib.SMTP("127.0.0.1", stack.postfix.smtp_port, timeout=60) as smtp:
            for i in range(PER_SESSION):
                codes.append(_transaction(smtp, session * PER_SESSION + i))
    except (OSError, smtplib.SMTPException):
        pass
    return codes + [0] * (PER_SESSION - len(codes))


def _transaction(smtp: smtplib.SMTP, n: int) -> int:
    rcpt = user(n % MAILBOXES)
    msg = (
        f"From: sender@outside.test\r\nTo: {rcpt}\r\nSubject: burst {n}\r\n"
        f"Message-ID: <burst-{n}-{time.time_ns()}@outside.test>\r\n\r\n"
        f"message {n} of the burst\r\n"
    )
    try:
        smtp.sendmail("sender@outside.test", [rcpt], msg.encode())
    except smtplib.SMTPRecipientsRefused as exc:
        smtp.rset()
        return int(next(iter(exc.recipients.values()))[0])
    except smtplib.SMTPResponseException as exc:
        smtp.rset()
        return int(exc.smtp_code)
    return 250


def _imap_logins(stack: Stack, stop: threading.Event) -> int:
    """Log in over IMAP (Dovecot's auth worker reads the database) until ``stop``."""
    logins = 0
    while not stop.is_set():
        imap = imaplib.IMAP4("127.0.0.1", stack.dovecot.imap_port, timeout=30)
        try:
            imap.login(user(logins % MAILBOXES), PW)
            logins += 1
        finally:
            imap.logout()
    return logins


def _delivered(root: Path) -> int:
    return sum(
        len(list((root / "example.test" / f"u{n:02d}" / "new").glob("*")))
        for n in range(MAILBOXES)
        if (root / "example.test" / f"u{n:02d}" / "new").is_dir()
    )


def _wait_delivered(stack: Stack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _delivered(stack.root) >= TOTAL and stack.postfix.queue_empty():
            return
        time.sleep(0.25)


def test_burst_of_200_from_20_sessions_all_delivered_nothing_locked(stack: Stack) -> None:
    mark = stack.postfix.log_mark()
    stop = threading.Event()
    started = time.monotonic()
    with ThreadPoolExecutor(SESSIONS + 1) as pool:
        logins = pool.submit(_imap_logins, stack, stop)
        sessions = [pool.submit(_session, stack, s) for s in range(SESSIONS)]
        codes = [code for f in sessions for code in f.result()]
        stop.set()
        n_logins = logins.result()
    _wait_delivered(stack, timeout=180)
    elapsed = time.monotonic() - started
    log = stack.postfix.log_text(mark)
    dovecot_log = stack.dovecot.log_path.read_text(errors="replace")
    delays = [float(d) for d in re.findall(r" delay=([\d.]+),", log)]
    numbers = {
        "dialect": stack.dialect,
        "accepted": codes.count(250),
        "refused": len(codes) - codes.count(250),
        "delivered": _delivered(stack.root),
        "sent": len(re.findall(r"status=sent", log)),
        "deferred": len(re.findall(r"status=deferred", log)),
        "bounced": len(re.findall(r"status=bounced", log)),
        "locked": log.count("database is locked") + dovecot_log.count("database is locked"),
        "fatal": len(re.findall(r"fatal:", log)),
        "max_delay": max(delays, default=0.0),
        "elapsed": round(elapsed, 1),
        "imap_logins": n_logins,
    }
    print(f"\nburst: {numbers}")
    assert numbers["refused"] == 0, sorted(set(codes))
    assert numbers["locked"] == 0, [ln for ln in log.splitlines() if "locked" in ln][:5]
    assert numbers["fatal"] == 0, [ln for ln in log.splitlines() if "fatal:" in ln][:5]
    assert (numbers["deferred"], numbers["bounced"]) == (0, 0), log[-3000:]
    assert (numbers["delivered"], numbers["sent"]) == (TOTAL, TOTAL)
    assert n_logins > 0
    assert "Error" not in dovecot_log or "database" not in dovecot_log, dovecot_log[-2000:]
    if stack.db_path is not None:
        mode = sqlite3.connect(stack.db_path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        # every file of the database stays out of reach of other users
        for path in stack.db_path.parent.iterdir():
            assert path.stat().st_mode & 0o007 == 0, path


def test_rollback_file_is_switched_to_wal_on_first_open(tmp_path: Path) -> None:
    from mailwarden.store.db import Database

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a INTEGER)")
    conn.commit()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    os.chmod(path, 0o600)  # nobody else reads it: nothing to lock out
    db = Database(f"sqlite:///{path}")
    db.ping()
    db.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_file_only_readable_by_others_is_switched_by_share_sqlite_only() -> None:
    """0640 (older setups): a switch on open would lock Postfix out; setup's share does it."""
    import grp

    from mailwarden.store.db import Database, share_sqlite

    base = servers.make_workdir("mw-wal-")
    path = base / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a INTEGER)")
    conn.commit()
    conn.close()
    os.chmod(path, 0o640)
    db = Database(f"sqlite:///{path}")
    db.ping()
    db.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    share_sqlite(str(path), grp.getgrnam("postfix").gr_gid)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    shutil.rmtree(base)


def test_shared_file_read_by_postfix_while_written() -> None:
    """As user postfix, like proxymap: no busy timeout, 2 s of reads during writes."""
    import grp

    from mailwarden.store.db import Database, share_sqlite

    if shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs root and runuser")
    base = servers.make_workdir("mw-wal-")  # a directory user postfix may enter
    path = base / "db" / "mw.db"
    db = Database(f"sqlite:///{path}", create=True)
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (a INTEGER)")
    db.close()
    share_sqlite(str(path), grp.getgrnam("postfix").gr_gid)
    assert (path.parent.stat().st_mode & 0o7777, path.stat().st_mode & 0o777) == (0o2770, 0o660)
    reader = (
        "import sqlite3, time\n"
        "end, n = time.monotonic() + 2, 0\n"
        "while time.monotonic() < end:\n"
        f"    c = sqlite3.connect({str(path)!r}, timeout=0)\n"
        "    c.execute('SELECT count(*) FROM t').fetchone(); c.close(); n += 1\n"
        "print(n)\n"
    )
    db = Database(f"sqlite:///{path}")
    proc = subprocess.Popen(
        ["runuser", "-u", "postfix", "--", "/usr/bin/python3", "-c", reader],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while proc.poll() is None:
        with db.transaction() as tx:
            tx.execute("INSERT INTO t VALUES (1)")
    db.close()
    out, err = proc.communicate()
    assert proc.returncode == 0 and int(out) > 0, err
    for name in path.parent.iterdir():
        assert name.stat().st_mode & 0o007 == 0, name
    shutil.rmtree(base)
