"""The real ``mailwarden lmtpd`` (a subprocess on a unix socket, SQLite store) against
what probing the running stack found (issue 10):

- a large message is spooled, not held: lmtpd's peak RSS (``VmHWM``) grows far less than
  the message, and the delivered file is the message, byte for byte;
- 1,500 RCPTs of one mailbox in one transaction: one copy, one reply per accepted RCPT;
- NUL and TAB in an address are not echoed raw.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import Cli
from tests.daemons import Daemon, mail_dirs, start_daemon

pytestmark = pytest.mark.integration


@dataclass
class Lmtpd:
    base: Path
    root: Path
    sock: Path
    daemon: Daemon

    def files(self, user: str) -> list[Path]:
        new = self.root / "example.test" / user / "new"
        return sorted(new.iterdir()) if new.is_dir() else []

    def vm_hwm_kb(self) -> int:
        for line in Path(f"/proc/{self.daemon.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def lmtpd() -> Iterator[Lmtpd]:
    base = servers.make_workdir("mw-lmtpd-hard-")
    root, db, url = mail_dirs(base)
    cfg = base / "mailwarden.toml"
    cfg.write_text(
        f'[database]\nurl = "{url}"\n[mail]\nroot = "{root}"\n'
        f'[lda]\nlmtp_listen = []\nmetrics_dir = "{base / "metrics"}"\n'
    )
    cli = Cli(cfg, url)
    cli.ok("db", "init")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", "--password-stdin", "alice@example.test", stdin="pw-alice-1\n")
    sock = base / "lmtp.sock"
    daemon = start_daemon("lmtpd", cfg, f"unix:{sock}", base / "lmtpd.log")
    try:
        yield Lmtpd(base, root, sock, daemon)
    finally:
        daemon.stop(30)
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


class Client:
    """A plain LMTP client: smtplib.LMTP reads one reply after DATA, not one per RCPT."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(120)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith("220 ")

    def reply(self) -> str:
        while True:
            line = self.file.readline().decode("ascii").rstrip("\r\n")
            assert line, "connection closed"
            if line[3:4] != "-":
                return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_large_message_is_spooled_not_held(lmtpd: Lmtpd) -> None:
    size = 60 * 1024 * 1024
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-spooled-line\r\n"
    head = b"Subject: big\r\nMessage-ID: <big@outside.test>\r\n\r\n..starts with a dot\r\n"
    body = head + line * (size // len(line))
    before = lmtpd.vm_hwm_kb()
    c = Client(lmtpd.sock)
    try:
        c.send(b"LHLO t\r\nMAIL FROM:<s@outside.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [c.reply() for _ in range(4)][1:] == [
            "250 2.1.0 Ok",
            "250 2.1.5 <alice@example.test> Ok",
            "354 End data with <CR><LF>.<CR><LF>",
        ]
        view = memoryview(body)
        for i in range(0, len(body), 1 << 20):
            c.send(view[i : i + (1 << 20)])
        c.send(b".\r\n")
        assert c.reply() == "250 2.0.0 <alice@example.test> Delivered"
    finally:
        c.close()
    grown_mb = (lmtpd.vm_hwm_kb() - before) / 1024
    print(f"lmtpd VmHWM {before / 1024:.1f} MB -> +{grown_mb:.1f} MB for a {size >> 20} MB message")
    assert grown_mb < 15, f"peak RSS grew {grown_mb:.1f} MB for a {size >> 20} MB message"
    [delivered] = lmtpd.files("alice")
    want = body.replace(b"\r\n..", b"\r\n.").replace(b"\r\n", b"\n")
    got = delivered.read_bytes()
    prefix = b"Return-Path: <s@outside.test>\nDelivered-To: alice@example.test\n"
    assert got[: len(prefix)] == prefix
    assert got[len(prefix) :] == want  # byte-identical
    assert f",S={len(got)}," in delivered.name
    delivered.unlink()
    # No spool file left behind (O_TMPFILE: there is never a name).
    fds = [os.readlink(p) for p in Path(f"/proc/{lmtpd.daemon.pid}/fd").iterdir()]
    assert not [f for f in fds if "(deleted)" in f or "mailwarden-lmtp" in f], fds


def test_one_copy_per_mailbox_one_reply_per_rcpt(lmtpd: Lmtpd) -> None:
    c = Client(lmtpd.sock)
    try:
        c.send(b"LHLO t\r\nMAIL FROM:<s@outside.test>\r\n")
        c.reply(), c.reply()
        c.send(b"RCPT TO:<alice@example.test>\r\n" * 1500)
        rcpts = [c.reply() for _ in range(1500)]
        assert rcpts.count("250 2.1.5 <alice@example.test> Ok") == 1000
        assert rcpts.count("452 4.5.3 Error: too many recipients") == 500
        c.send(b"DATA\r\nSubject: once\r\n\r\nhello\r\n.\r\n")
        assert c.reply().startswith("354 ")
        finals = [c.reply() for _ in range(1000)]
        assert finals == ["250 2.0.0 <alice@example.test> Delivered"] * 1000
        c.send(b"NOOP\r\n")
        assert c.reply() == "250 2.0.0 OK"
    finally:
        c.close()
    files = lmtpd.files("alice")
    assert len(files) == 1, f"{len(files)} copies"
    assert files[0].read_bytes().endswith(b"Subject: once\n\nhello\n")
    files[0].unlink()


def test_nul_and_tab_in_an_address_are_not_echoed(lmtpd: Lmtpd) -> None:
    c = Client(lmtpd.sock)
    try:
        c.send(b"LHLO t\r\nMAIL FROM:<s@outside.test>\r\n")
        c.reply(), c.reply()
        c.send(b"RCPT TO:<al\x00ice\t@example.test>\r\n")
        answer = c.reply()
    finally:
        c.close()
    assert answer.startswith("550 5.1.1 <al\\x00ice\\x09@example.test> "), answer
    assert all(0x20 <= ord(ch) < 0x7F for ch in answer)
