"""Smoke tests for tests/servers.py: each real server starts, answers and stops.

Needs root and scripts/install-deps.sh; skipped otherwise.  Set
MAILWARDEN_KEEP_TEST_DIR=1 to keep the work dir (configs, logs) for debugging.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import smtplib
import socket
import sqlite3
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql
import pytest
from pymysql.connections import Connection

from tests import servers

pytestmark = pytest.mark.integration

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def smoke_base() -> Iterator[Path]:
    missing = servers.missing_requirements()
    if missing:
        pytest.skip("cannot run real servers: " + "; ".join(missing))
    base = servers.make_workdir("mailwarden-smoke-")
    yield base
    if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_mariadb(smoke_base: Path) -> Iterator[servers.MariaDB]:
    with servers.MariaDB(smoke_base) as db:
        yield db


@pytest.fixture(scope="session")
def smoke_dovecot(smoke_base: Path) -> Iterator[servers.Dovecot]:
    db_path = smoke_base / "dovecot-users.sqlite"
    sql_conf = f"""\
driver = sqlite
connect = {db_path}
default_pass_scheme = SHA512-CRYPT
password_query = SELECT user, password FROM users WHERE user = '%u'
user_query = SELECT home FROM users WHERE user = '%u'
iterate_query = SELECT user FROM users
"""
    mail_root = smoke_base / "vmail"
    dovecot = servers.Dovecot(smoke_base, sql_conf, mail_root)
    pw = dovecot.doveadm("pw", "-s", "SHA512-CRYPT", "-p", "alicepw")
    assert pw.returncode == 0, pw.stderr
    assert pw.stdout.startswith("{SHA512-CRYPT}$6$")
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE users (user TEXT PRIMARY KEY, password TEXT, home TEXT)")
        conn.execute(
            "INSERT INTO users VALUES (?, ?, ?)",
            ("alice@example.test", pw.stdout.strip(), str(mail_root / "example.test" / "alice")),
        )
    conn.close()
    os.chmod(db_path, 0o644)
    with dovecot:
        yield dovecot


@pytest.fixture(scope="session")
def smoke_postfix(smoke_base: Path) -> Iterator[servers.Postfix]:
    postfix = servers.Postfix(smoke_base, {"smtpd_banner": "$myhostname ESMTP smoke"})
    with postfix:
        yield postfix


@pytest.fixture(scope="session")
def smoke_clamd(smoke_base: Path) -> Iterator[servers.Clamd]:
    with servers.Clamd(smoke_base) as clamd:
        yield clamd


@pytest.fixture(scope="session")
def smoke_spamd(smoke_base: Path) -> Iterator[servers.Spamd]:
    with servers.Spamd(smoke_base) as spamd:
        yield spamd


EXIM_CONFIG = """\
primary_hostname = exim.example.test
acl_smtp_rcpt = acl_check_rcpt

begin acl
acl_check_rcpt:
  deny    local_parts = blocked
          message = blocked by smoke ACL
  accept
"""


@pytest.fixture(scope="session")
def smoke_exim(smoke_base: Path) -> Iterator[servers.Exim]:
    exim = servers.Exim(smoke_base, EXIM_CONFIG)
    yield exim
    exim.stop()


# --------------------------------------------------------------------------- helpers


def test_helpers(tmp_path: Path) -> None:
    ports = {servers.free_port() for _ in range(20)}
    assert len(ports) == 20
    port = ports.pop()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        servers.wait_port(port, time.monotonic() + 0.2)
    assert time.monotonic() - t0 < 2
    with pytest.raises(TimeoutError):
        servers.wait_unix_socket(tmp_path / "nothing.sock", time.monotonic() + 0.1)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ValueError, match="traversable"):
        servers.MariaDB(private)


# --------------------------------------------------------------------------- MariaDB


def _connect(url: str, unix_socket: str | None = None) -> Connection[Any]:
    """Connect as the URL's user, over TCP or (unix_socket given) the unix socket."""
    u = urlsplit(url)
    user, password = unquote(u.username or ""), unquote(u.password or "")
    database = u.path.lstrip("/")
    if unix_socket is not None:
        return pymysql.connect(
            unix_socket=unix_socket, user=user, password=password, database=database
        )
    return pymysql.connect(
        host=u.hostname, port=u.port or 3306, user=user, password=password, database=database
    )


def _current_user(conn: Connection[Any]) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        row = cur.fetchone()
    assert row is not None
    return str(row[0])


def test_mariadb_tcp_and_socket(smoke_mariadb: servers.MariaDB) -> None:
    db = smoke_mariadb
    url = db.create_database("smoke", "smoke_user", "p@ss w'rd:/")
    assert url.startswith(f"mysql://smoke_user:p%40ss%20w%27rd%3A%2F@127.0.0.1:{db.port}/smoke")

    conn = _connect(url)
    assert _current_user(conn) == "smoke_user@127.0.0.1"
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x INT)")
        cur.execute("INSERT INTO t VALUES (42)")
    conn.commit()
    conn.close()

    conn = _connect(url, unix_socket=str(db.socket))
    assert _current_user(conn) == "smoke_user@localhost"
    with conn.cursor() as cur:
        cur.execute("SELECT x FROM t")
        assert cur.fetchall() == ((42,),)
    conn.close()

    assert db.execute("SELECT x FROM t", database="smoke").strip() == "42"
    db.drop_database("smoke")
    with pytest.raises(pymysql.err.OperationalError):
        _connect(url)


def test_mariadb_outage_and_restart(smoke_mariadb: servers.MariaDB) -> None:
    db = smoke_mariadb
    url = db.create_database("outage", "outage_user", "pw")
    _connect(url).close()
    db.stop()
    db.stop()  # idempotent
    assert not servers.port_open(db.port)
    with pytest.raises(pymysql.err.OperationalError):
        _connect(url)
    db.start()
    conn = _connect(url)  # same datadir, same port, data kept
    assert _current_user(conn) == "outage_user@127.0.0.1"
    conn.close()
    db.drop_database("outage")


# --------------------------------------------------------------------------- Dovecot


def test_dovecot_imap_login_and_lmtp(smoke_dovecot: servers.Dovecot) -> None:
    dovecot = smoke_dovecot
    auth = dovecot.doveadm("auth", "test", "alice@example.test", "alicepw")
    assert auth.returncode == 0, auth.stdout + auth.stderr

    with smtplib.LMTP("127.0.0.1", dovecot.lmtp_port) as lmtp:
        refused = lmtp.sendmail(
            "sender@outside.test",
            ["alice@example.test"],
            b"From: sender@outside.test\r\nSubject: smoke\r\n\r\nhello\r\n",
        )
    assert refused == {}

    imap = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    imap.login("alice@example.test", "alicepw")
    status, data = imap.select("INBOX")
    assert status == "OK"
    assert data == [b"1"]
    imap.logout()

    maildir = dovecot.mail_root / "example.test" / "alice"
    assert maildir.stat().st_uid == servers.VMAIL_UID
    files = [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()]  # SELECT moves to cur/
    assert len(files) == 1

    bad = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        bad.login("alice@example.test", "wrong")
    bad.logout()

    dovecot.reload()
    assert servers.port_open(dovecot.pop3_port)


# --------------------------------------------------------------------------- Postfix


def test_postfix_postmap_q(smoke_postfix: servers.Postfix) -> None:
    pf = smoke_postfix
    spec = "inline:{ alice@example.test=OK, { bob@example.test = REJECT no } }"
    assert pf.postmap_q("alice@example.test", spec) == "OK"
    assert pf.postmap_q("bob@example.test", spec) == "REJECT no"
    assert pf.postmap_q("carol@example.test", spec) is None
    table = pf.write_file("access", "example.test OK\n")
    assert pf.postmap_q("example.test", f"texthash:{table}") == "OK"
    with pytest.raises(RuntimeError, match="postmap"):
        pf.postmap_q("x", f"texthash:{pf.config_dir / 'missing'}")


def test_postfix_smtp_banner_restart(smoke_postfix: servers.Postfix) -> None:
    pf = smoke_postfix
    assert pf.postconf("-h", "smtpd_banner").strip() == "$myhostname ESMTP smoke"
    with smtplib.SMTP("127.0.0.1", pf.smtp_port, timeout=10) as smtp:
        code, msg = smtp.ehlo("client.test")
        assert code == 250
    pf.wait_log(r"daemon started")
    assert pf.queue_empty()

    mark = pf.log_mark()
    pf.stop()
    pf.stop()  # idempotent
    assert not servers.port_open(pf.smtp_port)
    pf.start()
    pf.wait_log(r"daemon started", since=mark)
    smtp = smtplib.SMTP(timeout=10)
    code, banner = smtp.connect("127.0.0.1", pf.smtp_port)
    assert code == 220
    assert banner == b"mx.example.test ESMTP smoke"
    smtp.quit()
    pf.reload()
    pf.flush()

    etc_main_cf = Path("/etc/postfix/main.cf").read_text()
    if "tests/servers.py" in etc_main_cf:  # ours: lists the instance for non-root sendmail -C
        assert str(pf.config_dir) in etc_main_cf


# --------------------------------------------------------------------------- clamd


def _instream(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(b"zINSTREAM\0" + struct.pack("!L", len(data)) + data + struct.pack("!L", 0))
    reply = b""
    while not reply.endswith(b"\0"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    return reply.rstrip(b"\0")


def test_clamd_instream_unix_and_tcp(smoke_clamd: servers.Clamd) -> None:
    clamd = smoke_clamd
    assert len(clamd.eicar) == 68
    for family, address in (
        (socket.AF_UNIX, str(clamd.socket)),
        (socket.AF_INET, ("127.0.0.1", clamd.port)),
    ):
        for data, expected in (
            (clamd.eicar, b"stream: Test.EICAR-Local.UNOFFICIAL FOUND"),
            (b"just a clean line\n", b"stream: OK"),
        ):
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(address)
                assert _instream(sock, data) == expected


# --------------------------------------------------------------------------- spamd


def _spamd_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    return reply


def test_spamd_ping_and_gtube(smoke_spamd: servers.Spamd) -> None:
    spamd = smoke_spamd
    assert spamd.ping()
    reply = _spamd_request(spamd.port, b"PING SPAMC/1.5\r\n\r\n")
    assert reply.startswith(b"SPAMD/1.5 0 PONG"), reply
    msg = b"From: a@outside.test\r\nSubject: gtube\r\n\r\n" + GTUBE + b"\r\n"
    reply = _spamd_request(
        spamd.port, b"CHECK SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(msg) + msg
    )
    assert re.search(rb"Spam: True ; 10\d\d\.\d+ / 5\.0", reply), reply


# --------------------------------------------------------------------------- Exim


def test_exim_bh_and_daemon(smoke_exim: servers.Exim) -> None:
    exim = smoke_exim
    out = exim.bh(
        "HELO client.test\r\n"
        "MAIL FROM:<sender@outside.test>\r\n"
        "RCPT TO:<anyone@example.test>\r\n"
        "RCPT TO:<blocked@example.test>\r\n"
        "QUIT\r\n"
    )
    assert "250 Accepted" in out, out
    assert "550 blocked by smoke ACL" in out, out

    exim.start_daemon()
    smtp = smtplib.SMTP(timeout=10)
    code, banner = smtp.connect("127.0.0.1", exim.port)
    assert code == 220
    assert banner.startswith(b"exim.example.test ESMTP Exim 4.96")
    smtp.quit()
    exim.stop()
    exim.stop()  # idempotent
    assert not servers.port_open(exim.port)
    assert str(exim.config_path) in Path("/etc/exim4/trusted_configs").read_text()
    assert "lost privilege" not in (exim.paniclog.read_text() if exim.paniclog.exists() else "")
