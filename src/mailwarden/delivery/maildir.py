"""Maildir: open (creating) a mailbox below the mail root and write one message durably.

What it does
    ``open_maildir`` walks from the mail root to the mailbox directory one component at a
    time with ``O_NOFOLLOW|O_DIRECTORY`` (so a symlink planted anywhere below the root
    is refused, and nothing is ever created outside it), creating missing directories
    mode 0700 and owned by the mail uid/gid when running as root, and returns a
    ``Maildir`` holding the directory's file descriptor. Every later operation is
    relative to that descriptor.

    ``Maildir.deliver`` follows DJB's recipe with the durability Linux needs
    (REFERENCE §3): a unique name ``<sec>.M<usec>P<pid>Q<n>R<rand>.<host>,S=<size>,W=<vsize>``,
    ``O_CREAT|O_EXCL|O_NOFOLLOW`` in ``tmp/``, one write loop, ``fsync``, ``link()`` into
    ``new/`` (never ``rename``: it would replace), unlink the tmp name, ``fsync`` of
    ``new/``. A failure at any step removes the tmp file; nothing partial is ever visible
    in ``new/``, and a delivered file is never modified again. The message is bytes, or
    a ``Source`` (``delivery.body``: a spooled message) copied in chunks, so a large
    message is never whole in memory.

    ``Maildir.folder`` creates a Maildir++ folder (``.Junk``) with its ``maildirfolder``
    marker and subscribes it in Dovecot's ``subscriptions`` file.

Locking
    ``lock(shared=...)`` takes ``flock`` on the Maildir directory itself: deliveries hold
    it shared (they run in parallel), a ``maildirsize`` recalculation holds it exclusive
    (so no delivery can link a file and append its quota line in the middle of a scan).

Errors
    ``MaildirError(verdict)``: 4.3.0 for a symlink or non-directory in the path, 4.3.1 for
    a full disk (ENOSPC/EDQUOT), 4.3.0 for any other ``OSError``; always temporary, the
    MTA keeps the message.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Protocol

from mailwarden.verdict import Verdict

DIR_MODE = 0o700
FILE_MODE = 0o600
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Source(Protocol):
    """A message too large to hold as one ``bytes`` (``delivery.body``)."""

    size: int
    vsize: int

    def chunks(self) -> Iterator[bytes]: ...


class MaildirError(Exception):
    """A delivery could not be written; ``verdict`` is the temporary status to answer."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.text)
        self.verdict = verdict


def os_verdict(exc: OSError, what: str) -> Verdict:
    """The status for a failed filesystem call (ENOSPC/EDQUOT = 4.3.1 mail system full)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Verdict("4.3.1", f"Mail system full: {what}")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return Verdict("4.3.0", f"Refusing symlink or non-directory in Maildir path: {what}")
    return Verdict("4.3.0", f"Cannot write Maildir: {what}: {exc.strerror}")


class Names:
    """Unique Maildir file names for this process (REFERENCE §3.2)."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        host = os.uname().nodename or "localhost"  # gethostname(), without the socket module
        self._host = host.replace("/", r"\057").replace(":", r"\072")

    def make(self, size: int, vsize: int) -> str:
        now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        pid = os.getpid()
        rand = os.urandom(6).hex()  # what secrets.token_hex(6) returns, without its imports
        return f"{sec}.M{usec}P{pid}Q{next(self._seq)}R{rand}.{self._host},S={size},W={vsize}"


def vsize(data: bytes) -> int:
    """RFC822.SIZE as Dovecot's ``,W=`` counts it: every LF counted as CRLF."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def _mkdir_open(parent: int, name: str, owner: tuple[int, int] | None) -> int:
    """Open directory ``name`` below ``parent`` (creating it), never through a symlink."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)  # the usual case: it exists
    except FileNotFoundError:
        pass
    try:
        os.mkdir(name, DIR_MODE, dir_fd=parent)
        created = True
    except FileExistsError:
        created = False
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    if created and owner is not None:
        os.fchown(fd, *owner)
    return fd


def _fsync_dir(fd: int) -> None:
    os.fsync(fd)


class Maildir:
    """An open Maildir (its directory descriptor); use as a context manager."""

    def __init__(self, fd: int, path: str, owner: tuple[int, int] | None) -> None:
        self.fd = fd
        self.path = path
        self.owner = owner

    def __enter__(self) -> Maildir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @contextmanager
    def lock(self, *, shared: bool) -> Iterator[None]:
        fcntl.flock(self.fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def relock(self, *, shared: bool) -> None:
        """Convert the lock this descriptor holds (not atomic: flock(2))."""
        fcntl.flock(self.fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)

    def ensure(self) -> None:
        """Create ``tmp/ new/ cur/`` if missing."""
        for sub in ("tmp", "new", "cur"):
            os.close(_mkdir_open(self.fd, sub, self.owner))

    def folder(self, name: str) -> str:
        """Create (if needed) and subscribe the Maildir++ folder ``name``; its dir name."""
        dirname = "." + name
        fd = _mkdir_open(self.fd, dirname, self.owner)
        try:
            for sub in ("tmp", "new", "cur"):
                os.close(_mkdir_open(fd, sub, self.owner))
            self._touch(fd, "maildirfolder")
        finally:
            os.close(fd)
        self._subscribe(name)
        return dirname

    def _touch(self, dirfd: int, name: str) -> None:
        try:
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE, dir_fd=dirfd
            )
        except FileExistsError:
            return
        if self.owner is not None:
            os.fchown(fd, *self.owner)
        os.close(fd)

    def _subscribe(self, name: str) -> None:
        """Add ``name`` to Dovecot's ``subscriptions`` (old one-per-line format, which
        Dovecot 2.3 still reads; a version-2 file gets the same plain line appended)."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_APPEND
        fd = os.open("subscriptions", flags, FILE_MODE, dir_fd=self.fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            existing = b""
            while chunk := os.read(fd, 65536):
                existing += chunk
            lines = existing.split(b"\n")
            if name.encode() in lines:
                return
            if self.owner is not None and not existing:
                os.fchown(fd, *self.owner)
            prefix = b"" if not existing or existing.endswith(b"\n") else b"\n"
            os.write(fd, prefix + name.encode() + b"\n")
        finally:
            os.close(fd)

    def deliver(self, data: bytes | Source, names: Names, folder: str = "") -> str:
        """Write ``data`` durably into ``new/`` of the Maildir or ``folder``; its file name."""
        if isinstance(data, bytes | bytearray):
            name = names.make(len(data), vsize(data))
        else:
            name = names.make(data.size, data.vsize)
        base = os.open(folder, _DIR_FLAGS, dir_fd=self.fd) if folder else os.dup(self.fd)
        try:
            tmp = os.open("tmp", _DIR_FLAGS, dir_fd=base)
            try:
                new = os.open("new", _DIR_FLAGS, dir_fd=base)
                try:
                    return self._write(data, name, tmp, new)
                finally:
                    os.close(new)
            finally:
                os.close(tmp)
        finally:
            os.close(base)

    def _write(self, data: bytes | Source, name: str, tmp: int, new: int) -> str:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, FILE_MODE, dir_fd=tmp)
        linked = False
        try:
            try:
                if self.owner is not None:
                    os.fchown(fd, *self.owner)
                written = 0
                for chunk in [data] if isinstance(data, bytes | bytearray) else data.chunks():
                    view = memoryview(chunk)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                        written += n
                if not isinstance(data, bytes | bytearray) and written != data.size:
                    raise OSError(errno.EIO, f"message copy wrote {written} of {data.size} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(name, name, src_dir_fd=tmp, dst_dir_fd=new, follow_symlinks=False)
            linked = True
        finally:
            # The tmp name goes in every case: after link() the message lives in new/.
            with suppress(FileNotFoundError):
                os.unlink(name, dir_fd=tmp)
        if linked:
            _fsync_dir(new)
        return name


def open_maildir(root: str, path: str, owner: tuple[int, int] | None) -> Maildir:
    """Open the Maildir at absolute ``path`` (below ``root``), creating what is missing.

    ``path`` must already be checked by ``address.maildir_path``; this walk additionally
    refuses symlinks. ``owner`` = (uid, gid) to give new directories, or None.
    """
    rel = os.path.relpath(path, root)
    parts = [p for p in rel.split(os.sep) if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise MaildirError(Verdict("4.3.0", f"Maildir path {path!r} is not below the mail root"))
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise MaildirError(os_verdict(exc, root)) from exc
    try:
        for part in parts:
            nxt = _mkdir_open(fd, part, owner)
            os.close(fd)
            fd = nxt
        box = Maildir(fd, path, owner)
        box.ensure()
    except OSError as exc:
        os.close(fd)
        raise MaildirError(os_verdict(exc, path)) from exc
    return box
