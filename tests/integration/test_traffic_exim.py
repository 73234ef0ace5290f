"""Traffic on an Exim site (``[traffic] counter = "daemons"``), end to end with REAL Exim.

The stack of test_exim_stack.py (contrib/exim/exim4.conf rendered, policyd through
``${readsocket}``, lmtpd behind the lmtp transport, clamd, spamd, Dovecot) plus SMTP AUTH
through Dovecot's auth socket (``MAILWARDEN_DOVECOT_AUTH``) and a relay domain whose
transport points at a capture SMTP server on 127.0.0.2 (the "remote" destination).

One inbound message from outside to alice, ``info@`` (an alias of alice) and
``bob@alias.test`` (an alias domain) counts ``in`` once for example.test with the bytes
lmtpd received (the Maildir file less the two lines the delivery agent put on top);
one message alice sends after SMTP AUTH to the capture destination counts ``out`` once
with Exim's ``$message_size`` (the message as received, without Exim's ``Received:``).
``mailwarden traffic --from --to --domain --json`` shows both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import smtplib
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.conftest import Cli
from tests.contrib import CONTRIB, render
from tests.daemons import Daemon, mail_dirs
from tests.integration.test_exim_stack import exim_values
from tests.integration.test_policy_mta import Policyd
from tests.integration.test_stack_spam import PW, start_lmtpd

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.test", "bob@example.test"
FAR = "far.test"  # a relay domain: its transport is the capture server
CAPTURE_HOST = "127.0.0.2"  # not Exim's local_interfaces: Exim would refuse to mail itself


# --- a capture SMTP server ----------------------------------------------------------------


@dataclass
class Capture:
    """A minimal SMTP server that keeps what it receives (the remote destination)."""

    port: int = 0
    messages: list[bytes] = field(default_factory=list)
    server: socketserver.ThreadingTCPServer | None = None

    def start(self, host: str = CAPTURE_HOST) -> Capture:
        capture = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 capture ESMTP\r\n")
                data: list[bytes] | None = None
                for line in self.rfile:
                    if data is not None:
                        if line in (b".\r\n", b".\n"):
                            capture.messages.append(b"".join(data))
                            data = None
                            self.wfile.write(b"250 2.0.0 kept\r\n")
                        else:
                            data.append(line[1:] if line.startswith(b"..") else line)
                        continue
                    verb = line[:4].upper()
                    if verb == b"QUIT":
                        self.wfile.write(b"221 2.0.0 bye\r\n")
                        return
                    if verb == b"DATA":
                        data = []
                        self.wfile.write(b"354 go on\r\n")
                    else:
                        self.wfile.write(b"250 ok\r\n")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# --- helpers shared with test_traffic_postfix.py ------------------------------------------


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def report(cli: Cli, domain: str = "example.test") -> dict[str, Any]:
    """``mailwarden traffic --from TODAY --to TODAY --domain D --json``."""
    out: dict[str, Any] = json.loads(
        cli.ok("traffic", "--from", today(), "--to", today(), "--domain", domain, "--json")
    )
    return out


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def wait_for_total(cli: Cli, expected: dict[str, int], timeout: float = 20.0) -> dict[str, Any]:
    """The report once its total reaches ``expected`` (counts are written behind, ~1 s),
    then again 2.5 s later: nothing more may arrive (no second counter)."""
    wait_for(
        f"traffic {expected}",
        lambda: all(report(cli)["total"][k] >= v for k, v in expected.items()),
        timeout,
    )
    time.sleep(2.5)
    return report(cli)


def delivered_bytes(root: Path, user: str, sender: str, subject: str) -> int:
    """The size of the message the delivery agent received: the Maildir file less the
    ``Return-Path`` and ``Delivered-To`` lines it put on top."""
    box = root / "example.test" / user / "new"
    for path in box.iterdir():
        raw = path.read_bytes()
        if f"Subject: {subject}".encode() in raw:
            prefix = f"Return-Path: <{sender}>\nDelivered-To: {user}@example.test\n"
            assert raw.startswith(prefix.encode()), raw[:200]
            return len(raw) - len(prefix)
    raise AssertionError(f"no {subject!r} for {user}")


def message(sender: str, rcpts: list[str], subject: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{time.time_ns()}@traffic.test>\r\n\r\n" + "traffic words\r\n" * 40
    ).encode()


# --- the Exim stack -----------------------------------------------------------------------


@dataclass
class Stack:
    base: Path
    root: Path
    cli: Cli
    exim: servers.Exim
    capture: Capture


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    missing = servers.missing_requirements(
        servers.Exim, servers.Dovecot, servers.Clamd, servers.Spamd
    )
    if missing or not servers.Exim.binary().is_file():
        pytest.skip("cannot run real servers: " + "; ".join(missing or ["no exim"]))
    base = servers.make_workdir("mw-traffic-exim-")
    root, db, url = mail_dirs(base)
    clamd, spamd = servers.Clamd(base), servers.Spamd(base)
    started: list[servers._Server] = []
    daemons: list[Daemon | Policyd] = []
    capture = Capture().start()
    try:
        for server in (clamd, spamd):
            server.start()
            started.append(server)
        cfg = base / "mailwarden.toml"
        cfg.write_text(
            f'[database]\nurl = "{url}"\n[mail]\nroot = "{root}"\nuid = 5000\ngid = 5000\n'
            f'[lda]\nlmtp_listen = []\nmetrics_dir = "{base / "metrics"}"\n'
            '[policy]\ncache_ttl = 1.0\nrequest_timeout = 5.0\n[traffic]\ncounter = "daemons"\n'
        )
        cli = Cli(cfg, url)
        cli.ok("db", "init")
        cli.ok("domain", "add", "example.test")
        cli.ok("domain", "add", "alias.test", "--alias-of", "example.test")
        cli.ok(
            "domain", "add", FAR, "--relay", "--transport", f"smtp:[{CAPTURE_HOST}]:{capture.port}"
        )
        for user in (ALICE, BOB):
            cli.ok("user", "add", "--password-stdin", user, stdin=PW + "\n")
        cli.ok("alias", "add", "info@example.test", ALICE)
        for path in (db, *db.parent.iterdir()):
            os.chmod(path, 0o666)  # Exim (Debian-exim) and dovecot's auth worker read it
        os.chmod(db.parent, 0o777)

        policyd = Policyd(cfg, base / "policyd.log")
        daemons.append(policyd)
        sock = base / "lmtp.sock"
        daemons.append(start_lmtpd(cfg, sock, base / "lmtpd.log"))
        values = exim_values(url, root, policyd.port, sock, clamd, spamd.port)
        sql_conf = render((CONTRIB / "dovecot/dovecot-sql.conf.ext.sqlite").read_text(), values)
        auth = "service auth {\n  unix_listener auth-exim {\n    mode = 0666\n  }\n}\n"
        dovecot = servers.Dovecot(base, sql_conf, root, extra_conf=auth)
        dovecot.start()
        started.append(dovecot)
        conf = render((CONTRIB / "exim" / "exim4.conf").read_text(), values)
        exim = servers.Exim(
            base,
            "MAILWARDEN_NO_INSTANCE_OPTIONS = yes\n"
            f"MAILWARDEN_DOVECOT_AUTH = {dovecot.run_dir / 'auth-exim'}\n" + conf,
        )
        exim.start_daemon()
        started.append(exim)
        yield Stack(base, root, cli, exim, capture)
    finally:
        for server in reversed(started):
            server.stop()
        for daemon in daemons:
            daemon.stop()
        capture.stop()
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


def test_exim_site_counts_in_and_out_once(stack: Stack) -> None:
    outside = "sender@outside.test"
    rcpts = [ALICE, "info@example.test", "bob@alias.test"]
    with smtplib.SMTP("127.0.0.1", stack.exim.port, timeout=60) as smtp:
        smtp.sendmail(outside, rcpts, message(outside, rcpts, "traffic in"))
    wait_for("delivery", lambda: len(list((stack.root / "example.test").glob("*/new/*"))) == 2)
    size_in = delivered_bytes(stack.root, "bob", outside, "traffic in")
    assert size_in == delivered_bytes(stack.root, "alice", outside, "traffic in")

    sent = message(ALICE, [f"x@{FAR}"], "traffic out")
    with smtplib.SMTP("127.0.0.1", stack.exim.port, timeout=60) as smtp:
        smtp.login(ALICE, PW)
        smtp.sendmail(ALICE, [f"x@{FAR}"], sent)
    wait_for("the capture server", lambda: len(stack.capture.messages) == 1)
    assert b"Subject: traffic out" in stack.capture.messages[0]
    logged = re.findall(rf"<= {re.escape(ALICE)} .* S=(\d+)", stack.exim.log_text())
    assert len(logged) == 1, stack.exim.log_text()
    # $message_size in the data ACL: the message as received (LF line ends), without the
    # Received: header Exim adds (its log's S= includes that)
    size_out = len(sent.replace(b"\r\n", b"\n"))
    assert size_out < int(logged[0])

    expected = {"messages_in": 1, "messages_out": 1}
    got = wait_for_total(stack.cli, expected)
    total = {k: v for k, v in got["total"].items() if k != "domain"}
    assert total == {
        "messages_in": 1,
        "bytes_in": size_in,
        "messages_out": 1,
        "bytes_out": size_out,
    }, got
    assert [row["day"] for row in got["days"]] == [today()]
    assert report(stack.cli, FAR)["days"] == []  # a relay domain is not ours to count
