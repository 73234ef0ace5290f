"""The clamd and spamd clients against fake servers on 127.0.0.1 (unit level).

Real clamd/spamd are in tests/integration; here the fakes produce what is hard to get
from the real ones on demand: a connection closed mid-stream, a size-limit answer
followed by a reset, garbage, silence (timeout), a spamd error code.
"""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from mailwarden.core import scanverdict as sv
from mailwarden.milter.clamav import ClamdClient, parse_address, parse_reply
from mailwarden.milter.spamassassin import SpamdClient, parse_response

Handler = Callable[[socket.socket], None]


@pytest.fixture
def fake() -> Iterator[Callable[[Handler], str]]:
    """Start a one-connection-at-a-time fake server; returns its HOST:PORT."""
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def start(handler: Handler) -> str:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(5)

        def loop() -> None:
            while True:
                try:
                    conn, _ = lsock.accept()
                except OSError:
                    return
                with conn, contextlib.suppress(OSError):
                    handler(conn)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        servers.append((lsock, t))
        return f"127.0.0.1:{lsock.getsockname()[1]}"

    yield start
    for lsock, t in servers:
        with contextlib.suppress(OSError):
            lsock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        lsock.close()
        t.join(timeout=2)


def read_instream(conn: socket.socket, limit: int = 10**9) -> bytes | None:
    """Read an INSTREAM request; None if it went over ``limit``."""
    buf = b""
    while b"\0" not in buf:
        buf += conn.recv(100)
    assert buf.startswith(b"zINSTREAM\0")
    data, rest = b"", buf[len(b"zINSTREAM\0") :]
    while True:
        while len(rest) < 4:
            rest += conn.recv(65536)
        (n,) = struct.unpack("!L", rest[:4])
        rest = rest[4:]
        if n == 0:
            return data
        while len(rest) < n:
            rest += conn.recv(65536)
        data, rest = data + rest[:n], rest[n:]
        if len(data) > limit:
            return None


@pytest.mark.parametrize(
    ("reply", "state", "name"),
    [
        ("stream: OK", sv.CLEAN, ""),
        ("stream: Win.Test.EICAR_HDB-1 FOUND", sv.VIRUS, "Win.Test.EICAR_HDB-1"),
        ("INSTREAM size limit exceeded. ERROR", sv.TOO_LARGE, ""),
        ("Some error ERROR", sv.ERROR, ""),
        ("", sv.ERROR, ""),
        ("\x00garbage", sv.ERROR, ""),
    ],
)
def test_parse_clamd_reply(reply: str, state: str, name: str) -> None:
    result = parse_reply(reply)
    assert (result.state, result.name) == (state, name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/clamav/clamd.ctl", (socket.AF_UNIX, "/run/clamav/clamd.ctl")),
        ("/run/x.sock", (socket.AF_UNIX, "/run/x.sock")),
        ("127.0.0.1:3310", (socket.AF_INET, ("127.0.0.1", 3310))),
        ("[::1]:783", (socket.AF_INET6, ("::1", 783))),
    ],
)
def test_parse_address(text: str, expected: tuple[int, object]) -> None:
    assert parse_address(text) == expected


def test_parse_address_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_address("localhost")


def test_instream_framing_large_message(fake: Callable[[Handler], str]) -> None:
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        data = read_instream(conn)
        assert data is not None
        seen.append(data)
        conn.sendall(b"stream: OK\0")

    payload = bytes(range(256)) * 40_000  # 10 MB, all byte values
    result = ClamdClient(fake(handler), timeout=10).scan(io.BytesIO(payload))
    assert result.state == sv.CLEAN
    assert seen == [payload]


def test_size_limit_then_close(fake: Callable[[Handler], str]) -> None:
    def handler(conn: socket.socket) -> None:
        read_instream(conn, limit=100_000)
        conn.sendall(b"INSTREAM size limit exceeded. ERROR\0")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    result = ClamdClient(fake(handler), timeout=10).scan(io.BytesIO(b"x" * 5_000_000))
    assert result.state in (sv.TOO_LARGE, sv.ERROR)  # the RST may beat the answer


def test_clamd_closes_mid_stream(fake: Callable[[Handler], str]) -> None:
    def handler(conn: socket.socket) -> None:
        conn.recv(1000)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    result = ClamdClient(fake(handler), timeout=10).scan(io.BytesIO(b"y" * 5_000_000))
    assert result.state == sv.ERROR


def test_clamd_silent_times_out(fake: Callable[[Handler], str]) -> None:
    def handler(conn: socket.socket) -> None:
        read_instream(conn)
        conn.recv(10)  # wait for the client to give up

    result = ClamdClient(fake(handler), timeout=0.5).scan(io.BytesIO(b"z"))
    assert result.state == sv.ERROR and "timed out" in result.detail


def test_clamd_refused() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    result = ClamdClient(f"127.0.0.1:{port}", timeout=2).scan(io.BytesIO(b"z"))
    assert result.state == sv.ERROR and "connect" in result.detail


def test_clamd_garbage(fake: Callable[[Handler], str]) -> None:
    def handler(conn: socket.socket) -> None:
        read_instream(conn)
        conn.sendall(b"\xff\xfe what?\n")

    assert ClamdClient(fake(handler)).scan(io.BytesIO(b"z")).state == sv.ERROR


# --------------------------------------------------------------------------- spamd


def spamd_reply(status: bytes, headers: bytes = b"", body: bytes = b"") -> Handler:
    def handler(conn: socket.socket) -> None:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        head, _, msg = data.partition(b"\r\n\r\n")
        length = int(head.split(b"Content-length: ")[1].split(b"\r\n")[0])
        assert len(msg) == length and head.startswith(b"SYMBOLS SPAMC/1.5\r\n")
        conn.sendall(status + b"\r\n" + headers + b"\r\n" + body)

    return handler


def test_spamd_scores(fake: Callable[[Handler], str]) -> None:
    addr = fake(
        spamd_reply(b"SPAMD/1.1 0 EX_OK", b"Spam: True ; 1000.5 / 5.0\r\n", b"GTUBE,NO_RELAYS")
    )
    msg = b"Subject: x\r\n\r\nbody\r\n"
    result = SpamdClient(addr).check(io.BytesIO(msg), len(msg))
    assert result == sv.SpamResult(sv.SCORED, 1000.5, 5.0, ("GTUBE", "NO_RELAYS"))


def test_spamd_error_code(fake: Callable[[Handler], str]) -> None:
    addr = fake(spamd_reply(b"SPAMD/1.0 76 Bad header line: xyz"))
    result = SpamdClient(addr).check(io.BytesIO(b"x"), 1)
    assert result.state == sv.ERROR and "76" in result.detail


@pytest.mark.parametrize(
    ("data", "state"),
    [
        (b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -1.5 / 5.0\r\n\r\n", sv.SCORED),
        (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", sv.ERROR),
        (b"HTTP/1.1 200 OK\r\n\r\n", sv.ERROR),
        (b"", sv.ERROR),
    ],
)
def test_parse_spamd(data: bytes, state: str) -> None:
    assert parse_response(data).state == state


def test_spamd_timeout(fake: Callable[[Handler], str]) -> None:
    def handler(conn: socket.socket) -> None:
        while conn.recv(65536):
            pass
        time.sleep(1.5)  # say nothing

    result = SpamdClient(fake(handler), timeout=0.5).check(io.BytesIO(b"x"), 1)
    assert result.state == sv.ERROR and "timed out" in result.detail
