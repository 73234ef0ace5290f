"""The mail fetcher against a real Dovecot as the remote POP3/IMAP server (with TLS), the
fetched mail going through a real Postfix into lmtpd and a local Maildir.

One module-scoped stack: one SQLite database holding both the local mailboxes
(``*@example.test``, delivered by lmtpd behind Postfix) and the "remote" ones
(``*@isp.test``, whose Maildirs the test fills directly and Dovecot serves over IMAP,
IMAPS, POP3 with STARTTLS and POP3S, with a self-signed certificate). The fetcher runs as
the CLI (``mailwarden fetch run``, in-process or as a subprocess for SIGKILL) and as the
daemon (``mailwarden fetchd``). Each test uses its own remote and local mailbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import Cli, write_config
from tests.daemons import Daemon, start_daemon

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PW = "local-pw"
REMOTE_PW = "remote 'pw' ü"


@dataclass
class Stack:
    base: Path
    root: Path
    cfg: Path
    cli: Cli
    postfix: servers.Postfix
    dovecot: servers.Dovecot
    lmtpd: Daemon
    imaps_port: int
    pop3s_port: int
    cert: Path

    def mailbox(self, local: str) -> None:
        """A local mailbox and a remote one of the same local part."""
        for address in (f"{local}@example.test", f"{local}@isp.test"):
            self.cli.ok(
                "user",
                "add",
                "--password-stdin",
                address,
                stdin=(REMOTE_PW if address.endswith("isp.test") else PW) + "\n",
            )
        for sub in ("", "new", "cur", "tmp"):
            d = self.root / "isp.test" / local / sub
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, servers.VMAIL_UID, servers.VMAIL_GID)
            os.chown(d.parent, servers.VMAIL_UID, servers.VMAIL_GID)

    def put(self, local: str, n: int, *, size: int = 0, tag: str = "m") -> list[str]:
        """``n`` messages into the remote Maildir; their Message-IDs."""
        ids = []
        for i in range(n):
            mid = f"<{tag}{i}.{time.monotonic_ns()}@isp.test>"
            body = ("x" * 76 + "\r\n") * (size // 78) if size else f"message {i}\r\n"
            raw = (
                f"Return-Path: <sender{i}@outside.test>\r\nFrom: sender{i}@outside.test\r\n"
                f"To: {local}@isp.test\r\nSubject: {tag} {i}\r\nMessage-ID: {mid}\r\n\r\n{body}"
            ).encode()
            path = self.root / "isp.test" / local / "new" / f"{time.time_ns()}.{tag}{i}.test"
            path.write_bytes(raw)
            os.chown(path, servers.VMAIL_UID, servers.VMAIL_GID)
            ids.append(mid)
        return ids

    def remote_count(self, local: str) -> int:
        d = self.root / "isp.test" / local
        return sum(len(list((d / s).iterdir())) for s in ("new", "cur"))

    def local_files(self, local: str) -> list[Path]:
        d = self.root / "example.test" / local
        return [p for s in ("new", "cur") if (d / s).is_dir() for p in sorted((d / s).iterdir())]

    def wait_local(self, local: str, n: int, timeout: float = 60) -> list[Path]:
        deadline = time.monotonic() + timeout
        while len(self.local_files(local)) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{local}: {len(self.local_files(local))} < {n}\n{self.postfix.log_tail()}"
                )
            time.sleep(0.05)
        time.sleep(0.3)  # nothing more arrives
        return self.local_files(local)

    def add(self, local: str, *args: str, cfg: Path | None = None) -> int:
        cli = Cli(cfg, self.cli.url) if cfg else self.cli
        out = cli.ok(
            "fetch",
            "add",
            f"{local}@example.test",
            "--user",
            f"{local}@isp.test",
            "--host",
            "127.0.0.1",
            "--password-stdin",
            "--json",
            *args,
            stdin=REMOTE_PW + "\n",
        )
        return int(json.loads(out)["id"])

    def run(self, account: int, cli: Cli | None = None) -> dict[str, object]:
        r = (cli or self.cli)("fetch", "run", str(account), "--json")
        assert r.out, r.err
        runs = json.loads(r.out)["runs"]
        assert len(runs) == 1, r.err
        return dict(runs[0])


def _cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (SAN), so it verifies once trusted."""
    directory.mkdir(mode=0o700)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return cert, key


def _tls_conf(cert: Path, key: Path, imaps: int, pop3s: int) -> str:
    return f"""
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
service imap-login {{
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
  }}
}}
service pop3-login {{
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
  }}
}}
"""


def _sql_conf(db: Path, root: Path) -> str:
    text = (REPO / "contrib/dovecot/dovecot-sql.conf.ext.sqlite").read_text()
    for k, v in {
        "@SQLITE_PATH@": str(db),
        "@MAIL_ROOT@": str(root),
        "@MAIL_UID@": "5000",
        "@MAIL_GID@": "5000",
    }.items():
        text = text.replace(k, v)
    return text


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    missing = servers.missing_requirements(servers.Postfix, servers.Dovecot)
    if missing or not shutil.which("openssl"):
        pytest.skip("cannot run real servers: " + "; ".join(missing or ["no openssl"]))
    base = servers.make_workdir("mw-fetch-")
    root, dbdir = base / "vmail", base / "db"
    for d in (root, dbdir):
        d.mkdir()
        os.chown(d, servers.VMAIL_UID, servers.VMAIL_GID)
    db = dbdir / "mail.sqlite"
    url = f"sqlite:///{db}"
    postfix = servers.Postfix(base)
    cfg = write_config(
        base / "mailwarden.toml",
        url,
        root,
        f'[fetch]\nsmtp = "127.0.0.1:{postfix.smtp_port}"\nkey_file = "{base}/keys/fetch.key"\n'
        f'state_dir = "{base}/fetch-state"\ntimeout = 30.0\npoll = 0.5\n',
    )
    os.chmod(cfg, 0o644)
    cli = Cli(cfg, url)
    cli.ok("db", "init")
    cli.ok("domain", "add", "example.test")
    cli.ok("domain", "add", "isp.test")
    for path in (db, *dbdir.iterdir()):
        os.chown(path, servers.VMAIL_UID, servers.VMAIL_GID)
    os.chmod(db, 0o666)  # Dovecot's auth worker reads it
    os.chmod(dbdir, 0o777)
    sock = base / "lmtp.sock"
    lmtpd = start_daemon("lmtpd", cfg, f"unix:{sock}", base / "lmtpd.log")
    maps = postfix.write_file("vmailbox", "@example.test ok\n", 0o644)
    access = postfix.write_file("access", "refuse@example.test REJECT 5.7.1 not here\n", 0o644)
    postfix.postconf(
        "-e",
        "virtual_mailbox_domains=example.test",
        f"virtual_mailbox_maps=texthash:{maps}",
        f"virtual_transport=lmtp:unix:{sock}",
        "message_size_limit=104857600",
        # a permanent refusal at SMTP time for one mailbox (as the milter refuses a virus)
        f"smtpd_recipient_restrictions=check_recipient_access texthash:{access}, "
        "permit_mynetworks, reject_unauth_destination",
    )
    cert, key = _cert(base / "tls")
    imaps, pop3s = servers.free_port(), servers.free_port()
    dovecot = servers.Dovecot(
        base, _sql_conf(db, root), root, extra_conf=_tls_conf(cert, key, imaps, pop3s)
    )
    stack = Stack(base, root, cfg, cli, postfix, dovecot, lmtpd, imaps, pop3s, cert)
    try:
        postfix.start()
        dovecot.start()
        servers.wait_port(imaps, time.monotonic() + 20)
        servers.wait_port(pop3s, time.monotonic() + 20)
        yield stack
    finally:
        postfix.stop()
        dovecot.stop()
        lmtpd.stop(30)
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


def _header(path: Path, name: str) -> str:
    for line in path.read_bytes().split(b"\n\n")[0].replace(b"\r", b"").split(b"\n"):
        if line.lower().startswith(name.lower().encode() + b":"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


def test_imaps_delivers_each_message_once_through_postfix(stack: Stack) -> None:
    stack.mailbox("im1")
    ids = stack.put("im1", 3)
    account = stack.add(
        "im1", "--protocol", "imap", "--port", str(stack.imaps_port), "--no-verify-cert"
    )
    first = stack.run(account)
    assert (first["result"], first["delivered"], first["deleted"]) == ("ok", 3, 0)
    files = stack.wait_local("im1", 3)
    assert sorted(_header(f, "Message-ID") for f in files) == sorted(ids)
    fetched_from = {_header(f, "X-Mailwarden-Fetched-From") for f in files}
    assert fetched_from == {f"imap://im1@isp.test@127.0.0.1:{stack.imaps_port}/INBOX"}
    assert all(f.read_bytes().startswith(b"Return-Path: <sender") for f in files)
    assert stack.run(account)["delivered"] == 0  # second run: nothing new
    stack.put("im1", 1, tag="later")
    assert stack.run(account)["delivered"] == 1
    assert len(stack.wait_local("im1", 4)) == 4
    assert stack.remote_count("im1") == 4  # kept on the server
    shown = json.loads(stack.cli.ok("fetch", "show", str(account), "--json"))
    assert shown["last_result"] == "ok" and "password" not in json.dumps(shown)
    assert REMOTE_PW not in stack.cli.ok("fetch", "list", "--json")


def test_pop3_starttls_with_delete_removes_only_after_delivery(stack: Stack) -> None:
    stack.mailbox("po1")
    ids = stack.put("po1", 3)
    account = stack.add(
        "po1",
        "--protocol",
        "pop3",
        "--tls",
        "starttls",
        "--port",
        str(stack.dovecot.pop3_port),
        "--no-verify-cert",
        "--delete",
    )
    result = stack.run(account)
    assert (result["result"], result["delivered"], result["deleted"]) == ("ok", 3, 3)
    files = stack.wait_local("po1", 3)
    assert sorted(_header(f, "Message-ID") for f in files) == sorted(ids)
    assert stack.remote_count("po1") == 0
    assert stack.run(account)["delivered"] == 0


def test_pop3s_keep_then_second_run_fetches_nothing(stack: Stack) -> None:
    stack.mailbox("po2")
    stack.put("po2", 2)
    account = stack.add(
        "po2", "--protocol", "pop3", "--port", str(stack.pop3s_port), "--no-verify-cert"
    )
    assert stack.run(account)["delivered"] == 2
    assert stack.run(account)["delivered"] == 0
    assert len(stack.wait_local("po2", 2)) == 2 and stack.remote_count("po2") == 2


def test_wrong_password_is_one_line_and_nothing_moves(stack: Stack) -> None:
    stack.mailbox("bad")
    stack.put("bad", 2)
    out = stack.cli.ok(
        "fetch",
        "add",
        "bad@example.test",
        "--user",
        "bad@isp.test",
        "--host",
        "127.0.0.1",
        "--protocol",
        "imap",
        "--port",
        str(stack.imaps_port),
        "--no-verify-cert",
        "--delete",
        "--password-stdin",
        "--json",
        stdin="not the password\n",
    )
    account = str(json.loads(out)["id"])
    err = stack.cli.fails("fetch", "run", account)
    assert "login as bad@isp.test refused" in err and "not the password" not in err
    assert stack.remote_count("bad") == 2 and stack.local_files("bad") == []
    shown = json.loads(stack.cli.ok("fetch", "show", account, "--json"))
    assert shown["last_result"] == "error" and "refused" in shown["last_error"]


def test_untrusted_certificate_refused_unless_trusted_or_allowed(stack: Stack) -> None:
    stack.mailbox("tls")
    stack.put("tls", 1)
    account = stack.add("tls", "--protocol", "imap", "--port", str(stack.imaps_port))
    err = stack.cli.fails("fetch", "run", str(account))
    assert "TLS certificate not trusted" in err and "--no-verify-cert" in err
    assert stack.local_files("tls") == []
    # the same account, verifying, once the certificate is trusted (it names 127.0.0.1)
    os.environ["SSL_CERT_FILE"] = str(stack.cert)
    try:
        assert stack.run(account)["delivered"] == 1
    finally:
        del os.environ["SSL_CERT_FILE"]
    assert len(stack.wait_local("tls", 1)) == 1


def test_local_smtp_down_keeps_mail_on_the_server_for_the_next_run(stack: Stack) -> None:
    stack.mailbox("down")
    stack.put("down", 2)
    closed = servers.free_port()
    cfg_down = stack.base / "down.toml"
    cfg_down.write_text(
        stack.cfg.read_text().replace(
            f'smtp = "127.0.0.1:{stack.postfix.smtp_port}"', f'smtp = "127.0.0.1:{closed}"'
        )
    )
    account = stack.add(
        "down",
        "--protocol",
        "pop3",
        "--port",
        str(stack.pop3s_port),
        "--no-verify-cert",
        "--delete",
    )
    r = Cli(cfg_down, stack.cli.url)("fetch", "run", str(account), "--json")
    assert r.rc == 75, r.err
    result = json.loads(r.out)["runs"][0]
    assert (result["result"], result["delivered"], result["deleted"]) == ("deferred", 0, 0)
    assert "local delivery deferred" in str(result["error"])
    assert stack.remote_count("down") == 2 and stack.local_files("down") == []
    after = stack.run(account)
    assert (after["result"], after["delivered"], after["deleted"]) == ("ok", 2, 2)
    assert len(stack.wait_local("down", 2)) == 2 and stack.remote_count("down") == 0


def test_a_50_mb_message(stack: Stack) -> None:
    stack.mailbox("big")
    stack.put("big", 1, size=50 * 1024 * 1024)
    account = stack.add(
        "big", "--protocol", "imap", "--port", str(stack.imaps_port), "--no-verify-cert", "--delete"
    )
    started = time.monotonic()
    result = stack.run(account)
    assert (result["result"], result["delivered"], result["deleted"]) == ("ok", 1, 1), result
    (path,) = stack.wait_local("big", 1, timeout=120)
    lines = (50 * 1024 * 1024) // 78
    assert path.read_bytes().count(b"x" * 76 + b"\n") == lines  # every line arrived
    print(f"50 MB message fetched and submitted in {time.monotonic() - started:.1f} s")


def test_uidvalidity_change_fetches_only_what_is_new(stack: Stack) -> None:
    stack.mailbox("uv")
    stack.put("uv", 2)
    account = stack.add(
        "uv", "--protocol", "imap", "--port", str(stack.imaps_port), "--no-verify-cert"
    )
    assert stack.run(account)["delivered"] == 2
    time.sleep(1.1)  # Dovecot's new UIDVALIDITY is the time
    home = stack.root / "isp.test" / "uv"
    for path in home.iterdir():
        if path.name.startswith("dovecot"):
            path.unlink()  # the uidlist and indexes: the server renumbers
    stack.put("uv", 1, tag="new")
    result = stack.run(account)
    assert (result["delivered"], result["rematched"]) == (1, 2), result
    assert len(stack.wait_local("uv", 3)) == 3


def test_a_run_in_progress_holds_the_account(stack: Stack) -> None:
    stack.mailbox("lck")
    stack.put("lck", 1)
    account = stack.add(
        "lck", "--protocol", "imap", "--port", str(stack.imaps_port), "--no-verify-cert"
    )
    lock = stack.base / "fetch-state" / f"account-{account}.lock"
    lock.parent.mkdir(exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        assert stack.run(account)["result"] == "busy"
    assert stack.run(account)["delivered"] == 1


def test_sigkill_mid_run_loses_nothing_and_duplicates_at_most_the_one_in_flight(
    stack: Stack,
) -> None:
    stack.mailbox("kill")
    ids = stack.put("kill", 40)
    account = stack.add(
        "kill",
        "--protocol",
        "imap",
        "--port",
        str(stack.imaps_port),
        "--no-verify-cert",
        "--delete",
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailwarden",
            "--config",
            str(stack.cfg),
            "fetch",
            "run",
            str(account),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(stack.local_files("kill")) < 5 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert stack.remote_count("kill") == 40  # IMAP expunges only at the end of a run
    assert stack.run(account)["result"] == "ok"
    files = stack.wait_local("kill", 40)
    got = [_header(f, "Message-ID") for f in files]
    assert set(got) == set(ids)  # nothing lost
    duplicates = len(got) - len(set(got))
    print(f"SIGKILL mid-run: {duplicates} duplicate(s) of 40")
    assert duplicates <= 1
    assert stack.remote_count("kill") == 0


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def test_fetchd_runs_due_accounts_and_counts(stack: Stack) -> None:
    stack.mailbox("d1")
    stack.put("d1", 2)
    account = stack.add(
        "d1",
        "--protocol",
        "imap",
        "--port",
        str(stack.imaps_port),
        "--no-verify-cert",
        "--interval",
        "1m",
    )
    port = servers.free_port()
    log = stack.base / "fetchd.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailwarden",
                "--config",
                str(stack.cfg),
                "fetchd",
                "--metrics",
                f"127.0.0.1:{port}",
            ],
            env=dict(os.environ, PYTHONPATH=str(SRC)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert len(stack.wait_local("d1", 2)) == 2
        deadline = time.monotonic() + 20
        while 'mailwarden_fetch_messages_total{result="delivered"}' not in _metrics(port):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        text = _metrics(port)
        assert 'mailwarden_fetch_runs_total{protocol="imap",result="ok"}' in text
        shown = json.loads(stack.cli.ok("fetch", "show", str(account), "--json"))
        assert shown["last_result"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    text = log.read_text()
    assert "fetchd: listening on" in text and REMOTE_PW not in text


def test_bad_input_one_line(stack: Stack) -> None:
    err = stack.cli.fails(
        "fetch",
        "add",
        "nobody@example.test",
        "--protocol",
        "imap",
        "--host",
        "h",
        "--user",
        "u",
        "--password-stdin",
        stdin="pw\n",
    )
    assert "nobody@example.test" in err
    assert "no fetch account 999" in stack.cli.fails("fetch", "show", "999")
    assert "interval" in stack.cli.fails(
        "fetch",
        "add",
        "im1@example.test",
        "--protocol",
        "imap",
        "--host",
        "h",
        "--user",
        "u",
        "--interval",
        "5s",
        "--password-stdin",
        stdin="pw\n",
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    stack.mailbox("gone")
    account = stack.add("gone", "--protocol", "pop3", "--port", str(dead), "--tls", "none")
    assert "Connection refused" in stack.cli.fails("fetch", "run", str(account))


def test_accounts_and_seen_state_on_both_dialects(cli: Cli) -> None:
    """The CLI and ``store.fetch`` on SQLite and MariaDB (no remote server needed)."""
    from mailwarden.store import fetch as store
    from mailwarden.store.db import Database

    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", "--password-stdin", "a@example.test", stdin=PW + "\n")
    out = cli.ok(
        "fetch",
        "add",
        "a@example.test",
        "--protocol",
        "imap",
        "--host",
        "IMAP.ISP.test",
        "--user",
        "a",
        "--password-stdin",
        "--folder",
        "Archiv/2026",
        "--json",
        stdin=REMOTE_PW + "\n",
    )
    record = json.loads(out)
    assert (record["host"], record["port"], record["tls"], record["keep"]) == (
        "imap.isp.test",
        993,
        "tls",
        True,
    )
    assert "password" not in out and "password_enc" not in out
    err = cli.fails(
        "fetch",
        "add",
        "a@example.test",
        "--protocol",
        "imap",
        "--host",
        "imap.isp.test",
        "--user",
        "a",
        "--password-stdin",
        "--folder",
        "Archiv/2026",
        stdin="x\n",
    )
    assert "exists already" in err
    key = Path(str(cli.config_path).removesuffix(".toml") + ".fetch.key")
    assert key.stat().st_mode & 0o777 == 0o600
    db = Database(cli.url)
    try:
        with db.transaction() as tx:
            (account,) = store.listing(tx, "a@example.test")
            assert REMOTE_PW not in account.password_enc
            store.mark_seen(tx, account.id, "7:1", digest="d" * 64, state="delivered", now=1)
            store.mark_seen(tx, account.id, "7:1", digest="e" * 64, state="refused", now=2)
            store.mark_seen(tx, account.id, "7:2", digest="", state="delivered", now=2)
            assert store.seen(tx, account.id) == {
                "7:1": ("e" * 64, "refused"),
                "7:2": ("", "delivered"),
            }
            assert store.forget(tx, account.id, ["7:2", "7:3"]) == 1
            assert [a.id for a in store.due(tx, 0)] == [account.id]
            store.record_run(tx, account.id, now=100, result="ok", error=None, fetched=3)
            assert store.due(tx, 100 + 299) == [] and len(store.due(tx, 400)) == 1
        listed = json.loads(cli.ok("fetch", "list", "a@example.test", "--json"))
        assert [r["last_fetched"] for r in listed] == [3]
        cli.ok("user", "remove", "a@example.test")
        with db.transaction() as tx:  # removing the mailbox removed its accounts and seen
            assert store.listing(tx) == []
            assert tx.scalar("SELECT COUNT(*) FROM fetch_seen") == 0
    finally:
        db.close()


def test_permanent_local_refusal_is_recorded_kept_and_not_retried(stack: Stack) -> None:
    stack.mailbox("refuse")
    stack.put("refuse", 2)
    account = stack.add(
        "refuse",
        "--protocol",
        "pop3",
        "--port",
        str(stack.pop3s_port),
        "--no-verify-cert",
        "--delete",
    )
    result = stack.run(account)
    assert (result["result"], result["refused"], result["delivered"], result["deleted"]) == (
        "ok",
        2,
        0,
        0,
    )
    assert stack.remote_count("refuse") == 2  # kept on the server, even with --delete
    again = stack.run(account)
    assert (again["refused"], again["delivered"], again["deleted"]) == (0, 0, 0)  # not retried


class _CuttingProxy:
    """A TCP proxy to Dovecot's plain IMAP port that drops the connection once it has
    passed ``limit`` bytes from the server (mid-message), while ``cut`` is set."""

    def __init__(self, port: int, limit: int) -> None:
        self.target, self.limit, self.cut = port, limit, True
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(
                target=self._pipe, args=(server, client, self.cut), daemon=True
            ).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, cut: bool) -> None:
        passed = 0
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
                passed += len(data)
                if cut and passed > self.limit:
                    break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.sock.close()


def test_remote_dropping_mid_message_loses_and_deletes_nothing(stack: Stack) -> None:
    stack.mailbox("drop")
    ids = stack.put("drop", 1) + stack.put("drop", 1, size=2 * 1024 * 1024, tag="big")
    proxy = _CuttingProxy(stack.dovecot.imap_port, 1024 * 1024)
    try:
        account = stack.add(
            "drop", "--protocol", "imap", "--tls", "none", "--port", str(proxy.port), "--delete"
        )
        err = stack.cli.fails("fetch", "run", str(account))
        assert f"imap 127.0.0.1:{proxy.port}" in err
        assert stack.remote_count("drop") == 2  # the delivered one waits for a clean end
        proxy.cut = False
        result = stack.run(account)
        assert (result["result"], result["delivered"], result["deleted"]) == ("ok", 1, 2), result
    finally:
        proxy.close()
    files = stack.wait_local("drop", 2)
    assert sorted(_header(f, "Message-ID") for f in files) == sorted(ids)
    assert stack.remote_count("drop") == 0
