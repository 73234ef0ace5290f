"""A small clamd client: ``INSTREAM`` over a unix or TCP socket (REFERENCE §10.1).

Protocol: ``zINSTREAM\\0``, then chunks ``<4-byte big-endian length><data>``, then a
zero-length chunk; clamd answers one NUL-terminated line: ``stream: OK``,
``stream: <name> FOUND`` or ``<text> ERROR``. When the stream exceeds clamd's
``StreamMaxLength`` clamd answers ``INSTREAM size limit exceeded. ERROR`` and closes the
connection, so the writer may see EPIPE/ECONNRESET *before* it reads that answer: on a
write error this client still tries to read the reply, and reports ``too_large``.

Why not the ``clamd`` package from PyPI: its last release is from 2014; it writes with
``socket.send()`` instead of ``sendall()``, so a partial write desynchronises the chunk
framing on large messages; it sets the timeout only after ``connect()``; and it turns the
size-limit answer into a bare ``BrokenPipeError``. This client is ~100 lines with none
of that: ``sendall``, a connect timeout, an overall deadline, and the size limit decoded.

Who calls it: ``milter.app`` once per message, from a libmilter thread (blocking I/O
releases the GIL). Errors: never raises for scanner trouble; returns
``AvResult("error", detail=...)`` (connection refused, timeout, garbage reply) so the
caller applies ``milter.clamd_failure``.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import BinaryIO

from mailwarden.core.scanverdict import CLEAN, ERROR, TOO_LARGE, VIRUS, AvResult

CHUNK = 64 * 1024
MAX_REPLY = 4096


def parse_address(text: str) -> tuple[int, str | tuple[str, int]]:
    """``unix:/path`` (or a bare absolute path) or ``HOST:PORT`` -> (family, address)."""
    value = text.strip()
    if value.startswith("unix:") or value.startswith("/"):
        return socket.AF_UNIX, value.removeprefix("unix:")
    host, sep, port = value.removeprefix("inet:").rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"scanner address {text!r}: expected unix:/path or HOST:PORT")
    return socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, (
        host.strip("[]"),
        int(port),
    )


def connect(address: str, timeout: float) -> socket.socket:
    """A connected socket with ``timeout`` on connect and on every later call."""
    family, where = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(where)
    except BaseException:
        sock.close()
        raise
    return sock


class ClamdClient:
    """Scan streams with clamd at ``address`` (``unix:/path`` or ``HOST:PORT``)."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        parse_address(address)  # fail at start-up, not per message
        self.address = address
        self.timeout = timeout

    def scan(self, stream: BinaryIO) -> AvResult:
        """Send ``stream`` (from its current position) and return clamd's verdict."""
        deadline = time.monotonic() + self.timeout
        try:
            sock = connect(self.address, self.timeout)
        except OSError as exc:
            return AvResult(ERROR, detail=f"connect {self.address}: {_why(exc)}")
        with sock:
            try:
                self._send(sock, stream, deadline)
            except (BrokenPipeError, ConnectionResetError) as exc:
                # clamd may have answered (size limit) and closed: read what it said.
                return self._reply_after_abort(sock, exc)
            except OSError as exc:
                return AvResult(ERROR, detail=f"send: {_why(exc)}")
            try:
                return parse_reply(_read_reply(sock, deadline))
            except OSError as exc:
                return AvResult(ERROR, detail=f"reply: {_why(exc)}")

    def ping(self) -> bool:
        try:
            with connect(self.address, self.timeout) as sock:
                sock.sendall(b"zPING\0")
                return _read_reply(sock, time.monotonic() + self.timeout) == "PONG"
        except OSError:
            return False

    @staticmethod
    def _send(sock: socket.socket, stream: BinaryIO, deadline: float) -> None:
        sock.sendall(b"zINSTREAM\0")
        while chunk := stream.read(CHUNK):
            _check_deadline(sock, deadline)
            sock.sendall(struct.pack("!L", len(chunk)) + chunk)
        sock.sendall(b"\0\0\0\0")

    @staticmethod
    def _reply_after_abort(sock: socket.socket, exc: OSError) -> AvResult:
        try:
            sock.settimeout(1.0)
            text = _read_reply(sock, time.monotonic() + 1.0)
        except OSError:
            return AvResult(ERROR, detail=f"clamd closed the connection: {_why(exc)}")
        if text:
            return parse_reply(text)
        return AvResult(ERROR, detail=f"clamd closed the connection: {_why(exc)}")


def parse_reply(text: str) -> AvResult:
    """Decode one clamd INSTREAM answer."""
    reply = text.strip()
    if reply.startswith("stream: ") and reply.endswith(" FOUND"):
        return AvResult(VIRUS, name=reply[len("stream: ") : -len(" FOUND")].strip() or "unknown")
    if reply == "stream: OK":
        return AvResult(CLEAN)
    if "size limit exceeded" in reply.lower():
        return AvResult(TOO_LARGE, detail="StreamMaxLength exceeded")
    if not reply:
        return AvResult(ERROR, detail="empty reply")
    return AvResult(ERROR, detail=f"unexpected reply {reply[:120]!r}")


def _read_reply(sock: socket.socket, deadline: float) -> str:
    """Read until NUL/LF or EOF (bounded), decoded leniently."""
    data = b""
    while b"\0" not in data and b"\n" not in data and len(data) < MAX_REPLY:
        _check_deadline(sock, deadline)
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.split(b"\0", 1)[0].split(b"\n", 1)[0].decode("utf-8", "replace")


def _check_deadline(sock: socket.socket, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("scan deadline exceeded")
    sock.settimeout(left)


def _why(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return exc.strerror or type(exc).__name__
