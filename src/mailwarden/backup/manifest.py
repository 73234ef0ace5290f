"""The backup format: names, ``manifest.json``, ``files.jsonl`` and the checks on them.

Who calls it: ``backup.run`` writes and lists backups with it, ``backup.restore`` and
``backup.run.verify`` read them. Everything read back from a backup is checked here before
it is used: a backup name must look like one (``2026-12-05T063000Z``, optionally ``-2``),
every path in ``files.jsonl`` and every mailbox's Maildir must be a plain relative path
(no ``..``, no absolute path, no empty or ``.`` component, no NUL), so that a damaged or
tampered manifest cannot make a restore write outside the mail root.

Errors: ``BackupError`` (a ``UsageError``: CLI exit 1, one line) for a missing or
unreadable backup, an unknown format, or an unsafe path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from mailwarden.errors import UsageError

FORMAT = 1
MANIFEST = "manifest.json"
FILES = "files.jsonl"
MAIL = "mail"
CONFIG_DIR = "config"
PARTIAL = ".partial-"
REMOVING = ".removing-"
_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{6}Z(-\d{1,3})?$")


class BackupError(UsageError):
    """A backup cannot be made, read or restored; the message is one line."""


def new_name(now: float, taken: set[str]) -> str:
    """The directory name of a backup made at ``now`` (UTC), unique among ``taken``."""
    base = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(now))
    name, n = base, 1
    while name in taken or PARTIAL + name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def is_name(name: str) -> bool:
    """Whether ``name`` is a backup directory's name."""
    return _NAME.match(name) is not None


def check_name(name: str) -> str:
    if not is_name(name):
        raise BackupError(f"{name!r} is not a backup name (like 2026-12-05T063000Z)")
    return name


def safe_relpath(path: str) -> str:
    """``path`` if it is a plain relative path below a directory, else ``BackupError``."""
    parts = path.removesuffix("/").split("/")
    if not path or path.startswith("/") or "\0" in path or any(p in ("", ".", "..") for p in parts):
        raise BackupError(f"unsafe path {path!r} in the backup manifest: refused")
    return path


@dataclass(frozen=True, slots=True)
class Entry:
    """One file below ``mail/``: its path relative to the mail root."""

    path: str
    size: int
    mtime_ns: int
    sha256: str

    def line(self) -> str:
        return json.dumps([self.path, self.size, self.mtime_ns, self.sha256]) + "\n"

    @classmethod
    def parse(cls, line: str) -> Entry:
        try:
            path, size, mtime_ns, digest = json.loads(line)
        except (ValueError, TypeError):
            raise BackupError(f"unreadable line in {FILES}: {line[:60]!r}") from None
        if not isinstance(path, str) or not isinstance(size, int) or not isinstance(digest, str):
            raise BackupError(f"unreadable line in {FILES}: {line[:60]!r}")
        return cls(safe_relpath(path), size, int(mtime_ns), digest)


@dataclass(frozen=True, slots=True)
class Mailbox:
    address: str
    domain: str
    maildir: str


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    created: int
    host: str
    version: str
    mail_root: str
    database: dict[str, Any]  # {file, dialect, size, sha256}
    config: dict[str, Any] | None  # {file, source, size, sha256}
    files: dict[str, Any]  # {count, bytes, sha256} of files.jsonl and what it lists
    mailboxes: tuple[Mailbox, ...] = field(default=())
    format: int = FORMAT

    def to_json(self) -> str:
        data = asdict(self)
        data["mailboxes"] = [asdict(m) for m in self.mailboxes]
        return json.dumps(data, indent=2) + "\n"

    def mailbox(self, address: str) -> Mailbox | None:
        return next((m for m in self.mailboxes if m.address == address), None)


def load(backup_dir: str) -> Manifest:
    """Read and check the manifest of the backup in ``backup_dir``."""
    path = os.path.join(backup_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise BackupError(f"{backup_dir}: no {MANIFEST}: not a complete backup") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path}: unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown backup format {data.get('format')!r}")
    try:
        boxes = tuple(Mailbox(**m) for m in data.pop("mailboxes"))
        manifest = Manifest(**data, mailboxes=boxes)
    except (TypeError, KeyError) as exc:
        raise BackupError(f"{path}: malformed manifest: {exc}") from None
    for box in manifest.mailboxes:
        safe_relpath(box.maildir)
    return manifest


def entries(backup_dir: str) -> Iterator[Entry]:
    """The checked lines of ``files.jsonl``."""
    with open(os.path.join(backup_dir, FILES), encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            if line.strip():
                yield Entry.parse(line)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_new(path: str, text: str) -> None:
    """Create ``path`` (0600) with ``text``, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
