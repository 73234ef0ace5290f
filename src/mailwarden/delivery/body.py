"""A message to deliver, in memory up to a threshold and then in an unnamed temp file.

Who uses it: lmtpd's codec (``lmtpd.protocol``) writes a message here line by line as
it arrives (dot-unstuffed, CRLF already turned into LF), so a 100 MB message costs no
100 MB of RAM; ``delivery.deliver`` reads its header block (``head``) and hands it to
``delivery.maildir``, which copies it into the Maildir in ``CHUNK``-sized pieces. The
pipe LDA and the tests pass plain bytes (``Body.of``).

Where the bytes go: up to ``threshold`` bytes in memory; beyond, into a temp file opened
with ``O_TMPFILE`` (no name in any directory, mode 0600, gone when closed or when the
process dies) below ``directory``: by default ``$TMPDIR``, else ``/var/tmp`` (on disk;
Debian 13's ``/tmp`` is a tmpfs, which would hold the message in RAM again). Reads use
``pread`` at an offset, so the parallel deliveries of one message (one thread per
recipient) share the file without a shared file position.

Counts kept while writing: ``size`` (bytes) and ``vsize`` (Dovecot's ``,W=``: every
LF counted as CRLF), so the Maildir file name needs no second pass.

Errors: ``OSError`` from ``write`` (disk full, no temp directory): the caller answers
4.3.0 and keeps nothing. ``close()`` is idempotent.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

from mailwarden.delivery.headers import MAX_HEADER_BYTES

CHUNK = 1 << 20
DEFAULT_THRESHOLD = 1 << 20


def spool_directory() -> str:
    """``$TMPDIR``, else ``/var/tmp``, else what ``tempfile`` finds."""
    if os.environ.get("TMPDIR"):
        return os.environ["TMPDIR"]
    return "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()


def _tmpfile(directory: str | None) -> int:
    where = directory or spool_directory()
    try:
        return os.open(where, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except (OSError, AttributeError):  # a file system without O_TMPFILE
        fd, path = tempfile.mkstemp(prefix="mailwarden-lmtp-", dir=where)
        os.unlink(path)
        return fd


class Body:
    """Append-only message bytes with their size and vsize (see the module doc)."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD, directory: str | None = None) -> None:
        self.threshold = threshold
        self.directory = directory
        self._mem = bytearray()
        self._fixed: bytes | None = None  # Body.of: the caller's bytes, not copied
        self._fd = -1
        self.size = 0
        self._lf = 0
        self._crlf = 0
        self._last_cr = False

    @classmethod
    def of(cls, data: bytes) -> Body:
        """A body holding ``data`` as it is (no copy)."""
        body = cls()
        body._fixed = data
        body._count(data)
        return body

    @property
    def vsize(self) -> int:
        return self.size + self._lf - self._crlf

    @property
    def on_disk(self) -> bool:
        return self._fd >= 0

    def _count(self, data: bytes | bytearray) -> None:
        if not data:
            return
        self._lf += data.count(b"\n")
        self._crlf += data.count(b"\r\n") + (1 if self._last_cr and data[:1] == b"\n" else 0)
        self._last_cr = data[-1:] == b"\r"
        self.size += len(data)

    def write(self, data: bytes | bytearray) -> None:
        if self._fixed is not None:
            raise ValueError("a Body.of() is read-only")
        if self._fd < 0 and len(self._mem) + len(data) > self.threshold:
            self._fd = _tmpfile(self.directory)
            self._write_all(self._mem)
            self._mem = bytearray()
        if self._fd >= 0:
            self._write_all(data)
        else:
            self._mem += data
        self._count(data)

    def _write_all(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset`` (thread-safe: no shared position)."""
        if self._fixed is not None:
            return self._fixed[offset : offset + n]
        if self._fd < 0:
            return bytes(self._mem[offset : offset + n])
        out = bytearray()
        while len(out) < n:
            got = os.pread(self._fd, n - len(out), offset + len(out))
            if not got:
                break
            out += got
        return bytes(out)

    @property
    def head(self) -> bytes:
        """The start of the message: enough for ``delivery.headers.parse``."""
        return self.read(0, MAX_HEADER_BYTES)

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        if self._fixed is not None and len(self._fixed) <= size:
            yield self._fixed
            return
        offset = 0
        while offset < self.size:
            chunk = self.read(offset, min(size, self.size - offset))
            if not chunk:
                raise OSError(f"message spool ended at {offset} of {self.size} bytes")
            offset += len(chunk)
            yield chunk

    def getvalue(self) -> bytes:
        """The whole message in memory (tests, small messages)."""
        return self.read(0, self.size)

    def close(self) -> None:
        self._mem = bytearray()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Prefixed:
    """``prefix`` (a few header lines ending in LF) in front of a ``Body``: what
    ``Maildir.deliver`` writes, without copying the body."""

    def __init__(self, prefix: bytes, body: Body) -> None:
        self.prefix = prefix
        self.body = body
        self.size = len(prefix) + body.size
        vs = len(prefix) + prefix.count(b"\n") - prefix.count(b"\r\n")
        self.vsize = vs + body.vsize

    def chunks(self) -> Iterator[bytes]:
        if self.body.size <= CHUNK:  # the usual small message: one write
            yield self.prefix + self.body.read(0, self.body.size)
            return
        yield self.prefix
        yield from self.body.chunks()
