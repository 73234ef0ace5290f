"""A small spamd client: one ``SYMBOLS SPAMC/1.5`` request per message (REFERENCE §10.3).

Request: ``SYMBOLS SPAMC/1.5\\r\\nContent-length: N\\r\\n\\r\\n<message>``, then a
half-close. Response: ``SPAMD/1.1 0 EX_OK``, headers (``Spam: True ; 15.0 / 5.0``), a
blank line, and the comma-separated names of the rules that hit (used for the
``tests=`` part of ``X-Spam-Status``). A non-zero status code (``SPAMD/1.0 76
Bad header line``) is an error.

Why not ``aiospamc``: it is asyncio-only, and the milter runs in libmilter's threads,
one per SMTP connection. Calling it would mean ``asyncio.run()`` — a new event loop —
per message in every thread, plus its dependencies (loguru, typer, certifi) in the
daemon, for what is one request and one short reply. A blocking socket with a timeout
in the connection's own thread is the natural fit (it releases the GIL while waiting);
the protocol part is ~60 lines and has unit tests against a fake spamd and integration
tests against the real one.

Errors: never raises for scanner trouble; returns ``SpamResult("error", detail=...)``
(refused, timeout, error code, garbage) so the caller applies ``milter.spamd_failure``.
"""

from __future__ import annotations

import re
import socket
import time
from typing import BinaryIO

from mailwarden.core.scanverdict import ERROR, SCORED, SpamResult
from mailwarden.milter.clamav import connect, parse_address

MAX_RESPONSE = 64 * 1024
_STATUS = re.compile(r"^SPAMD/\d+\.\d+\s+(\d+)\s*(.*)$")
_SPAM = re.compile(r"^Spam:\s*(\w+)\s*;\s*(-?[\d.]+)\s*/\s*(-?[\d.]+)", re.IGNORECASE)


class SpamdClient:
    """Score messages with spamd at ``address`` (``HOST:PORT`` or ``unix:/path``)."""

    def __init__(self, address: str, timeout: float = 30.0, user: str = "") -> None:
        parse_address(address)
        self.address = address
        self.timeout = timeout
        self.user = user

    def check(self, stream: BinaryIO, size: int) -> SpamResult:
        """Score ``size`` bytes of ``stream`` (from its current position)."""
        deadline = time.monotonic() + self.timeout
        try:
            sock = connect(self.address, self.timeout)
        except OSError as exc:
            return SpamResult(ERROR, detail=f"connect {self.address}: {_why(exc)}")
        with sock:
            try:
                head = f"SYMBOLS SPAMC/1.5\r\nContent-length: {size}\r\n"
                if self.user:
                    head += f"User: {self.user}\r\n"
                sock.sendall(head.encode("ascii") + b"\r\n")
                _send_body(sock, stream, size)
                sock.shutdown(1)  # SHUT_WR: spamd reads until EOF
                response = _read_all(sock, deadline)
            except OSError as exc:
                return SpamResult(ERROR, detail=_why(exc))
        return parse_response(response)


def parse_response(data: bytes) -> SpamResult:
    """Decode a SYMBOLS/CHECK response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    status = _STATUS.match(lines[0]) if lines else None
    if status is None:
        return SpamResult(ERROR, detail=f"bad response {lines[0][:80]!r}" if lines else "empty")
    if status.group(1) != "0":
        return SpamResult(ERROR, detail=f"spamd error {status.group(1)} {status.group(2)[:80]}")
    for line in lines[1:]:
        m = _SPAM.match(line)
        if m:
            tests = tuple(
                t.strip() for t in body.decode("ascii", "replace").split(",") if t.strip()
            )
            return SpamResult(SCORED, float(m.group(2)), float(m.group(3)), tests)
    return SpamResult(ERROR, detail="no Spam: header in response")


def _send_body(sock: socket.socket, stream: BinaryIO, size: int) -> None:
    left = size
    while left > 0:
        chunk = stream.read(min(64 * 1024, left))
        if not chunk:
            break
        sock.sendall(chunk)
        left -= len(chunk)


def _read_all(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while len(data) < MAX_RESPONSE:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("spamd deadline exceeded")
        sock.settimeout(left)
        chunk = sock.recv(8192)
        if not chunk:
            break
        data += chunk
    return data


def _why(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or type(exc).__name__
