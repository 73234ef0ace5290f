"""Make, list, rotate and verify backups (``backup run``, ``list``, ``verify``).

Who calls it: ``admin/backup.py``; the systemd timer runs ``mailwarden backup run`` daily.

``run`` takes ``[backup] dir``/``.lock`` (one backup at a time; a second run waits), removes
what a killed run left (``.partial-*``, ``.removing-*``), then writes the new backup under
``.partial-NAME``: the database dump (``store.backup.dump``), the config file, the
mailbox list, the hard-linked snapshot of the mail root (``snapshot.take``, linked against
the newest complete backup), ``files.jsonl`` and last ``manifest.json``; ``sync``; renames
it to NAME. Only then are the oldest backups beyond ``keep`` removed (renamed to
``.removing-NAME`` first, so a half-removed one never looks complete).

``verify`` checks a backup against its manifest: ``files.jsonl`` against its checksum,
every file below ``mail/`` for presence, size and (unless quick) SHA-256, the database
dump's and config's checksums, and that the dump opens (SQLite ``integrity_check``) or is
complete (the MariaDB dump's trailer). It returns the problems found.

Errors: ``BackupError`` (one line): disk full or another filesystem error during a run
(the partial backup is removed, earlier ones stay), no backup / unknown backup name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mailwarden import __version__
from mailwarden.backup import manifest as mf
from mailwarden.backup import snapshot
from mailwarden.backup.manifest import BackupError, Manifest
from mailwarden.config import Settings
from mailwarden.store import backup as dumps
from mailwarden.store.db import Database


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    path: str
    stats: snapshot.Stats
    removed: tuple[str, ...]
    seconds: float


@contextlib.contextmanager
def locked(directory: str) -> Iterator[None]:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def complete(directory: str) -> list[str]:
    """Names of the complete backups in ``directory``, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    done = [
        n
        for n in names
        if mf.is_name(n) and os.path.isfile(os.path.join(directory, n, mf.MANIFEST))
    ]
    return sorted(done, key=_order)


def _order(name: str) -> tuple[str, int]:
    """Chronological: ``...Z`` before ``...Z-2`` before ``...Z-10``."""
    base, n = name[:18], name[19:]  # YYYY-MM-DDTHHMMSSZ[-N]
    return (base, int(n) if n else 1)


def find(directory: str, name: str | None) -> str:
    """The path of backup ``name``, or of the newest one when None."""
    if name is None:
        names = complete(directory)
        if not names:
            raise BackupError(f"no backup in {directory}")
        return os.path.join(directory, names[-1])
    path = os.path.join(directory, mf.check_name(name))
    if not os.path.isfile(os.path.join(path, mf.MANIFEST)):
        raise BackupError(f"no backup {name} in {directory}")
    return path


def _leftovers(directory: str) -> None:
    for name in os.listdir(directory):
        if name.startswith((mf.PARTIAL, mf.REMOVING)):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def run(settings: Settings, db: Database, progress: snapshot.Progress) -> Result:
    """Make a new backup, then rotate; see the module doc."""
    directory = settings.backup.dir
    started = time.monotonic()
    try:
        with locked(directory):
            _leftovers(directory)
            names = complete(directory)
            name = mf.new_name(time.time(), set(os.listdir(directory)))
            partial = os.path.join(directory, mf.PARTIAL + name)
            try:
                stats = _write(
                    settings, db=db, partial=partial, name=name, names=names, progress=progress
                )
                os.rename(partial, os.path.join(directory, name))
                _fsync_dir(directory)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            removed = rotate(directory, settings.backup.keep)
    except OSError as exc:
        raise _failed(exc, directory) from None
    return Result(name, os.path.join(directory, name), stats, removed, time.monotonic() - started)


def _failed(exc: OSError, directory: str) -> BackupError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        why = f"no space left in {directory}"
    else:
        why = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return BackupError(f"backup failed: {why}; partial backup removed, earlier backups kept")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(
    settings: Settings,
    *,
    db: Database,
    partial: str,
    name: str,
    names: list[str],
    progress: snapshot.Progress,
) -> snapshot.Stats:
    os.mkdir(partial, 0o700)
    url = settings.database.url
    dump_file = os.path.join(partial, dumps.dump_name(url))
    dumps.dump(url, dump_file)
    config = _copy_config(settings.source, partial)
    with db.read() as tx:
        boxes = tuple(mf.Mailbox(**row) for row in dumps.mailboxes(tx))
    previous_dir = os.path.join(os.path.dirname(partial), names[-1]) if names else None
    previous = snapshot.Previous(previous_dir, mf.entries(previous_dir) if previous_dir else ())
    entries, stats = snapshot.take(
        settings.mail.root, os.path.join(partial, mf.MAIL), previous, progress
    )
    files_path = os.path.join(partial, mf.FILES)
    mf.write_new(files_path, "".join(e.line() for e in entries))
    manifest = Manifest(
        name=name,
        created=int(time.time()),
        host=socket.getfqdn(),
        version=__version__,
        mail_root=settings.mail.root,
        database={
            "file": os.path.basename(dump_file),
            "dialect": db.dialect,
            "size": os.path.getsize(dump_file),
            "sha256": mf.sha256_file(dump_file),
        },
        config=config,
        files={"count": stats.files, "bytes": stats.bytes, "sha256": mf.sha256_file(files_path)},
        mailboxes=boxes,
    )
    mf.write_new(os.path.join(partial, mf.MANIFEST), manifest.to_json())
    os.sync()  # every copied file on disk before the backup counts as complete
    return stats


def _copy_config(source: str, partial: str) -> dict[str, Any] | None:
    if not os.path.isfile(source):
        return None  # built-in defaults: no file to keep
    os.mkdir(os.path.join(partial, mf.CONFIG_DIR), 0o700)
    dest = os.path.join(partial, mf.CONFIG_DIR, "mailwarden.toml")
    shutil.copyfile(source, dest)
    os.chmod(dest, 0o600)
    return {
        "file": f"{mf.CONFIG_DIR}/mailwarden.toml",
        "source": os.path.abspath(source),
        "size": os.path.getsize(dest),
        "sha256": mf.sha256_file(dest),
    }


def rotate(directory: str, keep: int) -> tuple[str, ...]:
    """Remove the oldest complete backups beyond ``keep``; their names."""
    names = complete(directory)
    doomed = names[: max(0, len(names) - keep)]
    for name in doomed:
        gone = os.path.join(directory, mf.REMOVING + name)
        os.rename(os.path.join(directory, name), gone)
        shutil.rmtree(gone)
    return tuple(doomed)


def describe(directory: str) -> list[dict[str, Any]]:
    """One record per complete backup, oldest first (``backup list``)."""
    rows = []
    for name in complete(directory):
        m = mf.load(os.path.join(directory, name))
        rows.append(
            {
                "name": name,
                "created": m.created,
                "database": m.database["dialect"],
                "mailboxes": len(m.mailboxes),
                "files": m.files["count"],
                "bytes": m.files["bytes"] + m.database["size"],
            }
        )
    return rows


def verify(path: str, *, quick: bool = False) -> list[str]:
    """The problems of the backup at ``path`` (empty: it matches its manifest)."""
    m = mf.load(path)
    problems: list[str] = []
    for part in (m.database, m.config):
        if part is not None:
            problems += _check_file(path, part["file"], part["size"], part["sha256"])
    dump_problem = dumps.check_dump(os.path.join(path, m.database["file"]))
    if dump_problem and not problems:
        problems.append(dump_problem)
    problems += _check_file(path, mf.FILES, None, m.files["sha256"])
    if problems and any(mf.FILES in p for p in problems):
        return problems
    count = 0
    for entry in mf.entries(path):
        count += 1
        problems += _check_file(
            os.path.join(path, mf.MAIL), entry.path, entry.size, None if quick else entry.sha256
        )
    if count != m.files["count"]:
        problems.append(f"{mf.FILES}: {count} files listed, manifest says {m.files['count']}")
    return problems


def _check_file(base: str, rel: str, size: int | None, sha256: str | None) -> list[str]:
    full = os.path.join(base, mf.safe_relpath(rel))
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        return [f"{rel}: missing"]
    if size is not None and st.st_size != size:
        return [f"{rel}: size {st.st_size}, manifest says {size}"]
    if sha256 is not None and mf.sha256_file(full) != sha256:
        return [f"{rel}: checksum differs from the manifest"]
    return []
