"""Spool: one message as the scanners see it, in memory up to a threshold, then on disk.

The milter writes the header fields (``Name: value`` CRLF), the blank line and the body
chunks here as libmilter hands them over, then scans the spool once at end of message,
whatever the number of recipients. ``tempfile.SpooledTemporaryFile(max_size=...)``
keeps small messages in memory and rolls over to an unlinked temp file (mode 0600 in
``$TMPDIR``) above ``milter.spool_threshold``, so a 40 MB message costs no 40 MB of RAM
and a crash leaves no file behind. ``close()`` is idempotent; the milter calls it from
``eom``, ``abort`` and ``close`` so no file descriptor outlives the transaction.
"""

from __future__ import annotations

import tempfile
from typing import BinaryIO, cast


class Spool:
    """An append-only message buffer with a byte count."""

    def __init__(self, threshold: int) -> None:
        self._file: tempfile.SpooledTemporaryFile[bytes] | None = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed in close()
            max_size=threshold, prefix="mailwarden-milter-"
        )
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError("spool is closed")
        self._file.write(data)
        self.size += len(data)

    def add_header(self, name: str, value: bytes) -> None:
        self.write(name.encode("utf-8", "surrogateescape") + b": " + value + b"\r\n")

    def reader(self) -> BinaryIO:
        """The content from the start (one reader at a time; each call rewinds)."""
        if self._file is None:
            raise ValueError("spool is closed")
        self._file.seek(0)
        return cast(BinaryIO, self._file)

    @property
    def on_disk(self) -> bool:
        return self._file is not None and bool(getattr(self._file, "_rolled", False))

    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
