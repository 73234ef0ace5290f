"""policyd as a daemon under bad input: none of it crashes it, and it keeps answering.

Runs the real daemon (subprocess) on SQLite; see test_policy_mta.py for the MTAs.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_policy_mta import Policyd, start_policyd

pytestmark = pytest.mark.integration

GOOD = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=alice@example.test\n"
    b"client_address=192.0.2.1\n\n"
)


@pytest.fixture(scope="module")
def daemon(workdir: Path) -> Iterator[Policyd]:
    base = workdir / "policyd-bad"
    base.mkdir()
    cli, d = start_policyd(base, f"sqlite:///{base}/db.sqlite")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", "alice@example.test", "--password-stdin", stdin="pw")
    yield d
    d.stop()


def talk(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def alive(d: Policyd) -> None:
    assert d.alive
    assert talk(d.port, GOOD) == b"action=DUNNO\n\n"


@pytest.mark.parametrize(
    "payload",
    [
        b"protocol_state=RCPT\nrecipient=a@b.test\n\n",  # missing request=
        b"request=something_else\n\n",
        b"request=smtpd_access_policy\n" + b"x" * 100_000 + b"\n\n",  # huge line
        b"request=smtpd_access_policy\nsender=\xff\xfe@x.test\n\n",  # not UTF-8
        b"request=smtpd_access_policy\n" + b"".join(b"a%d=1\n" % i for i in range(5000)) + b"\n",
        b"request=smtpd_access_policy\nno equals sign\n\n",
        b"request=smtpd_access_policy\nsender=a\x00b\n\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 50,  # a TLS hello
    ],
    ids=[
        "no-request",
        "bad-request",
        "huge-line",
        "non-utf8",
        "5000-attrs",
        "no-equals",
        "nul",
        "tls",
    ],
)
def test_malformed_gets_no_reply(daemon: Policyd, payload: bytes) -> None:
    assert talk(daemon.port, payload) == b""
    alive(daemon)


def test_unknown_attributes_ignored(daemon: Policyd) -> None:
    extra = GOOD.replace(b"\n\n", b"\nfuture_attribute=1\ntls_sni=x\n\n")
    assert talk(daemon.port, extra) == b"action=DUNNO\n\n"


def test_pipelined_requests_on_one_connection(daemon: Policyd) -> None:
    assert talk(daemon.port, GOOD * 50) == b"action=DUNNO\n\n" * 50


def test_stalled_half_request_is_closed(daemon: Policyd) -> None:
    # request_timeout is 5 s in the test config
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=15) as s:
        s.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\n")
        started = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - started < 12
    alive(daemon)


def test_connection_flood(daemon: Policyd) -> None:
    socks = []
    try:
        for _ in range(300):
            socks.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=5))
        for s in socks[:150]:
            s.sendall(GOOD)
        for s in socks[:150]:
            assert s.recv(100) == b"action=DUNNO\n\n"
    finally:
        for s in socks:
            s.close()
    for _ in range(200):  # open and drop at once
        socket.create_connection(("127.0.0.1", daemon.port), timeout=5).close()
    alive(daemon)
