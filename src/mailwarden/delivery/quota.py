"""Maildir++ quota: read, append and recalculate ``maildirsize`` (Courier's MDQ spec).

What it does
    ``usage`` returns the mailbox's current ``core.delivery.Usage`` from ``maildirsize``,
    recalculating the file when the spec says so (REFERENCE §4.2):

    * it is missing, or 5120 bytes or larger;
    * its limit line differs from the limits in the store (the store is the source of
      truth; compared numerically so Dovecot's own rewrite of the line is no change);
    * the new message would not fit and the file was not just recalculated, and it has
      more than one usage line or is 15 minutes old.

    ``append`` adds ``"<bytes> <count>\\n"`` with one ``O_APPEND`` write after a delivery.

    Recalculation scans ``new/`` and ``cur/`` of the Maildir and of every folder except
    ``.Trash``, taking sizes from ``,S=`` (else ``stat``; a file gone meanwhile is
    skipped), writes the file in ``tmp/`` and renames it over ``maildirsize``. If a
    scanned directory changed during the scan (someone else moved mail), it scans again.

    The same file is read and written by Dovecot's ``quota = maildir`` backend (see
    contrib/dovecot/90-mailwarden-quota.conf), so ``doveadm quota get`` agrees with it.

    ``recalc_maildir`` is ``mailwarden quota recalc``'s entry: the same recalculation
    for a Maildir given by path, under the exclusive lock, whatever the file says.

Locking: callers hold the Maildir's shared lock; this module upgrades to the exclusive
lock for a recalculation and goes back to shared (``Maildir.relock``).
Errors: ``OSError`` from the filesystem; the caller turns it into 4.3.x.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass

from mailwarden.core.delivery import Usage
from mailwarden.delivery.maildir import FILE_MODE, Maildir, open_maildir

FILENAME = "maildirsize"
RECALC_SIZE = 5120
STALE_SECONDS = 15 * 60
TRASH = ".Trash"
_SIZE_IN_NAME = r",S=(\d+)"
_LIMIT = r"^\s*(\d+)\s*([SC])\s*$"


@dataclass(frozen=True, slots=True)
class SizeFile:
    """A parsed ``maildirsize``."""

    max_bytes: int
    max_messages: int
    bytes: int
    messages: int
    lines: int  # usage lines, header excluded
    length: int
    mtime: float


def format_limits(max_bytes: int, max_messages: int) -> str:
    """The first line: ``10000S,100C``; empty parts are left out (0 = unlimited)."""
    parts = ([f"{max_bytes}S"] if max_bytes else []) + (
        [f"{max_messages}C"] if max_messages else []
    )
    return ",".join(parts)


def parse_limits(line: str) -> tuple[int, int]:
    max_bytes = max_messages = 0
    for part in line.split(","):
        m = re.match(_LIMIT, part)  # re's cache: compiled once, on first use
        if m and m.group(2) == "S":
            max_bytes = int(m.group(1))
        elif m:
            max_messages = int(m.group(1))
    return max_bytes, max_messages


# Usage lines as mailwarden and Dovecot append them; a file of only these (the usual
# case) is summed without a Python loop per line: parse() ran once per delivery on up
# to 5 KiB, and line by line it was one of lmtpd's largest costs (docs/benchmarks.md).
_PLAIN_LINES = re.compile(rb"(?:-?[0-9]+ -?[0-9]+\n)*")


def parse(data: bytes, mtime: float = 0.0) -> SizeFile:
    head, _, body = data.partition(b"\n")
    if _PLAIN_LINES.fullmatch(body):
        max_bytes, max_messages = parse_limits(head.decode("ascii", "replace"))
        nums = body.split()
        total, count = sum(map(int, nums[0::2])), sum(map(int, nums[1::2]))
        return SizeFile(max_bytes, max_messages, total, count, len(nums) // 2, len(data), mtime)
    lines = data.decode("ascii", "replace").split("\n")
    max_bytes, max_messages = parse_limits(lines[0])
    total = count = n = 0
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 2:
            continue
        try:
            total += int(fields[0])
            count += int(fields[1])
        except ValueError:
            continue
        n += 1
    return SizeFile(max_bytes, max_messages, total, count, n, len(data), mtime)


def read(box: Maildir) -> SizeFile | None:
    """The current ``maildirsize``, or None when it is missing."""
    try:
        fd = os.open(FILENAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=box.fd)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, RECALC_SIZE)
        mtime = os.fstat(fd).st_mtime
    finally:
        os.close(fd)
    return parse(data, mtime)


def _needs_recalc(sf: SizeFile | None, max_bytes: int, max_messages: int) -> bool:
    return (
        sf is None
        or sf.length >= RECALC_SIZE
        or (sf.max_bytes, sf.max_messages)
        != (
            max_bytes,
            max_messages,
        )
    )


def _stale(sf: SizeFile, now: float) -> bool:
    return sf.lines > 1 or now - sf.mtime >= STALE_SECONDS


def _as_usage(sf: SizeFile, max_bytes: int, max_messages: int) -> Usage:
    return Usage(max(sf.bytes, 0), max(sf.messages, 0), max_bytes, max_messages)


def usage(box: Maildir, max_bytes: int, max_messages: int, size: int = 0) -> Usage:
    """Current usage (recalculated when the spec requires it; see the module doc)."""
    sf = read(box)
    fresh = False
    if _needs_recalc(sf, max_bytes, max_messages):
        sf, fresh = _recalc_locked(box, max_bytes, max_messages, force=False)
    assert sf is not None
    current = _as_usage(sf, max_bytes, max_messages)
    if not current.fits(size) and not fresh and _stale(sf, time.time()):
        sf, _ = _recalc_locked(box, max_bytes, max_messages, force=True)
        current = _as_usage(sf, max_bytes, max_messages)
    return current


def _recalc_locked(
    box: Maildir, max_bytes: int, max_messages: int, *, force: bool
) -> tuple[SizeFile, bool]:
    """Recalculate under the exclusive lock (unless another process just did)."""
    box.relock(shared=False)
    try:
        sf = read(box)
        if force or _needs_recalc(sf, max_bytes, max_messages):
            return recalculate(box, max_bytes, max_messages), True
        assert sf is not None
        return sf, False
    finally:
        box.relock(shared=True)


def _folders(box: Maildir) -> list[str]:
    names = [""]
    for entry in os.scandir(box.fd):
        hidden = entry.name.startswith(".") and entry.name not in (".", "..", TRASH)
        if hidden and entry.is_dir(follow_symlinks=False):
            names.append(entry.name)
    return names


def _scan(box: Maildir) -> tuple[int, int, dict[str, int]]:
    total = count = 0
    mtimes: dict[str, int] = {}
    for folder in _folders(box):
        for sub in ("new", "cur"):
            rel = f"{folder}/{sub}" if folder else sub
            try:
                dfd = os.open(rel, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=box.fd)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                mtimes[rel] = os.fstat(dfd).st_mtime_ns
                size, n = _scan_dir(dfd)
            finally:
                os.close(dfd)
            total += size
            count += n
    return total, count, mtimes


def _scan_dir(dfd: int) -> tuple[int, int]:
    total = count = 0
    for entry in os.scandir(dfd):
        if entry.name.startswith("."):
            continue
        m = re.search(_SIZE_IN_NAME, entry.name.split(":2,")[0])
        if m:
            size = int(m.group(1))
        else:
            try:
                st = os.stat(entry.name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            size = st.st_size
        total += size
        count += 1
    return total, count


def _dirs_changed(box: Maildir, mtimes: dict[str, int]) -> bool:
    for rel, before in mtimes.items():
        try:
            if os.stat(rel, dir_fd=box.fd, follow_symlinks=False).st_mtime_ns != before:
                return True
        except FileNotFoundError:
            return True
    return False


def recalculate(box: Maildir, max_bytes: int, max_messages: int) -> SizeFile:
    """Scan the Maildir and replace ``maildirsize``; caller holds the exclusive lock."""
    for _attempt in range(3):
        total, count, mtimes = _scan(box)
        if not _dirs_changed(box, mtimes):
            break
    content = f"{format_limits(max_bytes, max_messages)}\n{total} {count}\n".encode()
    tmpname = f"tmp/maildirsize.{os.getpid()}.{time.monotonic_ns()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmpname, flags, FILE_MODE, dir_fd=box.fd)
    try:
        if box.owner is not None:
            os.fchown(fd, *box.owner)
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmpname, FILENAME, src_dir_fd=box.fd, dst_dir_fd=box.fd)
    return SizeFile(max_bytes, max_messages, total, count, 1, len(content), time.time())


def recalc_maildir(
    root: str, path: str, max_bytes: int, max_messages: int, owner: tuple[int, int] | None
) -> Usage | None:
    """Recount the Maildir at ``path`` (below ``root``) and rewrite its ``maildirsize``
    under the exclusive lock; None when there is no Maildir (nothing delivered yet).
    ``MaildirError``/``OSError`` when it cannot be read or written."""
    if not os.path.isdir(path):
        return None
    with open_maildir(root, path, owner) as box, box.lock(shared=False):
        sf = recalculate(box, max_bytes, max_messages)
    return _as_usage(sf, max_bytes, max_messages)


def append(box: Maildir, size: int, count: int = 1) -> None:
    """Record a delivery; a missing file is left missing (the next read recalculates)."""
    try:
        fd = os.open(
            FILENAME, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=box.fd
        )
    except FileNotFoundError:
        return
    try:
        os.write(fd, f"{size} {count}\n".encode())
    finally:
        os.close(fd)
