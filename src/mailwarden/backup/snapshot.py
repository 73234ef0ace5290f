"""The hard-linked snapshot of the mail root (``cp -al`` / ``rsync --link-dest`` in Python).

Who calls it: ``backup.run`` with the new backup's ``mail/`` directory and the previous
complete backup (if any).

How: the mail root is walked without following symlinks (a symlink is skipped: it could
point anywhere). A file the previous backup already holds is hard-linked to that copy;
only new and changed files are copied (and their SHA-256 computed while copying).
"Already holds" means, for a Maildir message (a file in ``cur/`` or ``new/``), the same
folder and the same unique name before the ``:2,`` flags with the same size: a message
file never changes after delivery, and Dovecot only renames it (new/ -> cur/, flags);
for any other file (``maildirsize``, Dovecot's index files, ``subscriptions``) the same
path, size and mtime, rsync's quick check. ``tmp/`` of a Maildir (deliveries in progress)
is left out. In a Maildir, ``new/`` is read before ``cur/``: a message Dovecot moves from
new/ to cur/ during the walk is found in cur/; a message renamed (flag change) between
the listing and the copy is looked up again by its unique name.

Errors: ``OSError`` from the filesystem (ENOSPC when the backup disk fills): the caller
removes the partial backup.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from mailwarden.backup.manifest import MAIL, Entry

Progress = Callable[[int, int], None]  # (files done, files total)


def message_key(path: str) -> tuple[str, str] | None:
    """(folder, unique name) of a Maildir message path, None for any other file."""
    parent, _, name = path.rpartition("/")
    folder, _, sub = parent.rpartition("/")
    if sub not in ("cur", "new") or not name or name.startswith("."):
        return None
    return folder, name.split(":", 1)[0]


@dataclass
class Stats:
    files: int = 0
    bytes: int = 0
    copied_files: int = 0
    copied_bytes: int = 0
    linked_files: int = 0


class Previous:
    """The previous backup's files, looked up by message key or by path."""

    def __init__(self, backup_dir: str | None, entries: Iterable[Entry]) -> None:
        self.mail = os.path.join(backup_dir, MAIL) if backup_dir else ""
        self.by_path: dict[str, Entry] = {}
        self.by_key: dict[tuple[str, str], Entry] = {}
        for e in entries:
            key = message_key(e.path)
            if key is not None:
                self.by_key[key] = e
            else:
                self.by_path[e.path] = e

    def match(self, path: str, st: os.stat_result) -> Entry | None:
        key = message_key(path)
        if key is not None:
            old = self.by_key.get(key)
            return old if old is not None and old.size == st.st_size else None
        old = self.by_path.get(path)
        if old is not None and old.size == st.st_size and old.mtime_ns == st.st_mtime_ns:
            return old
        return None


def walk(root: str, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every regular file below ``root``; see the module doc."""
    here = os.path.join(root, rel) if rel else root
    with os.scandir(here) as it:
        items = sorted(it, key=lambda e: e.name)
    is_maildir = any(e.name == "cur" for e in items) and any(e.name == "new" for e in items)
    if is_maildir:  # new/ before cur/ (see the module doc); tmp/ left out
        items = [e for e in items if e.name != "tmp"]
        items.sort(key=lambda e: (e.name != "new", e.name))
    for entry in items:
        path = f"{rel}/{entry.name}" if rel else entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            yield from walk(root, path)
        elif stat.S_ISREG(st.st_mode):
            yield path, st


def _make_dirs(dest: str, rel_dir: str, made: set[str]) -> None:
    if rel_dir in made or not rel_dir:
        return
    _make_dirs(dest, rel_dir.rpartition("/")[0], made)
    os.makedirs(os.path.join(dest, rel_dir), mode=0o700, exist_ok=True)
    made.add(rel_dir)


def copy_file(src: str, dst: str, st: os.stat_result) -> str:
    """Copy ``src`` to the new file ``dst`` (mode, owner, mtime kept); its SHA-256."""
    digest = hashlib.sha256()
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            while chunk := os.read(fin, 1 << 20):
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fout, view) :]
            os.fchmod(fout, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.fchown(fout, st.st_uid, st.st_gid)
        finally:
            os.close(fout)
    finally:
        os.close(fin)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    return digest.hexdigest()


def _renamed(root: str, path: str) -> tuple[str, os.stat_result] | None:
    """A message renamed since the walk (flags changed, new/ -> cur/): its new path."""
    key = message_key(path)
    if key is None:
        return None
    folder, unique = key
    for sub in ("cur", "new"):
        rel_dir = f"{folder}/{sub}" if folder else sub
        try:
            names = os.listdir(os.path.join(root, rel_dir))
        except FileNotFoundError:
            continue
        for name in names:
            if name.split(":", 1)[0] == unique:
                rel = f"{rel_dir}/{name}"
                return rel, os.lstat(os.path.join(root, rel))
    return None


def take(root: str, dest: str, previous: Previous, progress: Progress) -> tuple[list[Entry], Stats]:
    """Snapshot the mail ``root`` into ``dest``; the entries for ``files.jsonl``."""
    os.makedirs(dest, mode=0o700, exist_ok=True)
    files = list(walk(root)) if os.path.isdir(root) else []
    copier = _Copier(root, dest, previous)
    out = []
    for n, (path, st) in enumerate(files, 1):
        entry = copier.one(path, st)
        if entry is not None:
            out.append(entry)
            copier.stats.files += 1
            copier.stats.bytes += entry.size
        progress(n, len(files))
    return out, copier.stats


class _Copier:
    def __init__(self, root: str, dest: str, previous: Previous) -> None:
        self.root = root
        self.dest = dest
        self.previous = previous
        self.stats = Stats()
        self.made: set[str] = set()

    def one(self, path: str, st: os.stat_result) -> Entry | None:
        """Link or copy one file; None when it vanished (deleted since the walk)."""
        for _attempt in range(3):
            _make_dirs(self.dest, path.rpartition("/")[0], self.made)
            target = os.path.join(self.dest, path)
            linked = self._link(path, st, target)
            if linked is not None:
                return linked
            try:
                digest = copy_file(os.path.join(self.root, path), target, st)
            except FileNotFoundError:
                moved = _renamed(self.root, path)
                if moved is None:
                    return None
                path, st = moved
                continue
            self.stats.copied_files += 1
            self.stats.copied_bytes += st.st_size
            return Entry(path, st.st_size, st.st_mtime_ns, digest)
        return None

    def _link(self, path: str, st: os.stat_result, target: str) -> Entry | None:
        old = self.previous.match(path, st)
        if old is None:
            return None
        try:
            os.link(os.path.join(self.previous.mail, old.path), target, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EMLINK, errno.ENOENT, errno.EPERM):
                raise  # ENOSPC (a directory block) and the like
            return None
        self.stats.linked_files += 1
        return Entry(path, st.st_size, st.st_mtime_ns, old.sha256)
