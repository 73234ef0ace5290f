"""Restore from a backup: mailboxes and domains by merging, the database by replacing.

Who calls it: ``admin/backup.py`` (``backup restore``).

Mailboxes (``plan`` then ``apply``): a restore only adds, never overwrites or deletes.
A message of the backup is copied back when its folder in the live Maildir holds no
message with the same unique name (the part before ``:2,``) in ``cur/`` or ``new/`` —
so a message whose flags changed since is not duplicated, and mail that arrived since
the backup is left alone. Other files (``subscriptions``, ``dovecot-keywords``, Sieve
scripts) are copied back only where none exists; Dovecot's indexes, ``dovecot-uidlist``
and ``maildirsize`` never are (Dovecot rebuilds the first two; the last is recalculated).
Each file is written the Maildir way: a new file in the folder's ``tmp/``, fsync,
``link`` to its place (never ``rename``: it would replace), unlink tmp, fsync the
directory, owned by ``[mail] uid/gid`` when run as root. Every path is checked first:
the mailbox's Maildir (``address.maildir_path``) and every file name from ``files.jsonl``
(``manifest.safe_relpath``) must stay below the mail root, and the directories are
opened with ``O_NOFOLLOW`` (``delivery.maildir.open_maildir``) so a symlink is refused.
Afterwards the mailbox's ``maildirsize`` and ``quota_usage`` are recalculated
(``delivery.quota.recalc_maildir``, the function ``quota recalc`` uses).

Database (``restore_database``): the dump's checksum and integrity are checked first; then
``store.backup.restore`` replaces the live database's contents with it.

Errors: ``BackupError``/``UsageError`` (one line) for an unsafe path, a mailbox or domain
the backup does not hold, a dump of another dialect or that fails its check, and for a
filesystem error while copying (a symlink in the Maildir's path, disk full: the files
already copied back stay, a second run copies the rest).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field

from mailwarden import address as addresses
from mailwarden.backup import manifest as mf
from mailwarden.backup.manifest import BackupError, Entry, Manifest
from mailwarden.backup.snapshot import message_key
from mailwarden.config import Settings
from mailwarden.delivery.maildir import FILE_MODE, Maildir, MaildirError, open_maildir
from mailwarden.store import backup as dumps
from mailwarden.store import quota
from mailwarden.store.db import Database, parse_url

NEVER = ("dovecot.index", "dovecot-uidlist", "dovecot-uidvalidity", "dovecot.list.index")
NEVER_NAMES = ("maildirsize", "dovecot.mailbox.log")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class MailboxPlan:
    address: str
    maildir: str  # relative to the mail root, checked
    restore: list[Entry] = field(default_factory=list)  # paths relative to the mail root
    present: int = 0  # messages of the backup the live Maildir still has


def select(
    m: Manifest, *, mailbox: str | None, domain: str | None, every: bool = False
) -> list[mf.Mailbox]:
    """The mailboxes of the backup to restore: one address, a domain's, or all."""
    if every:
        if not m.mailboxes:
            raise BackupError(f"backup {m.name} holds no mailbox")
        return list(m.mailboxes)
    if mailbox is not None:
        box = m.mailbox(mailbox)
        if box is None:
            raise BackupError(f"backup {m.name} holds no mailbox {mailbox}")
        return [box]
    boxes = [b for b in m.mailboxes if b.domain == domain]
    if not boxes:
        raise BackupError(f"backup {m.name} holds no mailbox of domain {domain}")
    return boxes


def plan(backup: str, root: str, boxes: list[mf.Mailbox]) -> list[MailboxPlan]:
    """What restoring ``boxes`` from the backup at ``backup`` would copy back."""
    plans = []
    for box in boxes:
        addresses.maildir_path(root, mf.safe_relpath(box.maildir))  # stays below root
        plans.append(MailboxPlan(box.address, box.maildir.removesuffix("/") + "/"))
    live: dict[str, set[str]] = {}
    for entry in mf.entries(backup):
        for p in plans:
            if entry.path.startswith(p.maildir):
                _classify(root, p, entry, live)
                break
    return plans


def _classify(root: str, p: MailboxPlan, entry: Entry, live: dict[str, set[str]]) -> None:
    inner = entry.path[len(p.maildir) :]
    key = message_key(inner)
    if key is None:
        name = inner.rpartition("/")[2]
        if name.startswith(NEVER) or name in NEVER_NAMES or "/tmp/" in f"/{inner}":
            return
        if not os.path.lexists(os.path.join(root, entry.path)):
            p.restore.append(entry)
        return
    folder, unique = key
    here = p.maildir + (f"{folder}/" if folder else "")
    if here not in live:
        live[here] = _unique_names(os.path.join(root, here))
    if unique in live[here]:
        p.present += 1
    else:
        p.restore.append(entry)


def _unique_names(folder: str) -> set[str]:
    names: set[str] = set()
    for sub in ("cur", "new"):
        with suppress(FileNotFoundError, NotADirectoryError):
            names.update(n.split(":", 1)[0] for n in os.listdir(os.path.join(folder, sub)))
    return names


def apply(
    backup: str, settings: Settings, db: Database | None, plans: Iterable[MailboxPlan]
) -> int:
    """Copy back what the plans list, then recalculate each mailbox's quota; files copied."""
    mail = settings.mail
    owner = (mail.uid, mail.gid) if os.geteuid() == 0 else None
    copied = 0
    for p in plans:
        path = addresses.maildir_path(mail.root, p.maildir)
        try:
            with open_maildir(mail.root, path, owner) as box:
                box.ensure()
                for entry in p.restore:
                    src = os.path.join(backup, mf.MAIL, mf.safe_relpath(entry.path))
                    copied += _restore_file(box, src, entry.path[len(p.maildir) :])
            if db is not None:
                recalculate(settings, db, p.address, path)
        except MaildirError as exc:
            raise BackupError(f"restore {p.address}: {exc.verdict.text}") from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise BackupError(f"restore {p.address}: {exc.strerror or exc}{where}") from None
    return copied


def _open_dirs(box: Maildir, rel_dir: str) -> int:
    """Open (creating) ``rel_dir`` below the Maildir, component by component, no symlinks."""
    if rel_dir.startswith(".") and "/" in rel_dir and rel_dir.count("/") == 1:
        folder = rel_dir.partition("/")[0]
        if folder not in (".", ".."):
            box.folder(folder[1:])  # a Maildir++ folder: maildirfolder, subscribed
    fd = os.dup(box.fd)
    for part in (p for p in rel_dir.split("/") if p):
        try:
            os.mkdir(part, 0o700, dir_fd=fd)
            made = True
        except FileExistsError:
            made = False
        try:
            nxt = os.open(part, _DIR, dir_fd=fd)
        finally:
            os.close(fd)
        if made and box.owner is not None:
            os.fchown(nxt, *box.owner)
        fd = nxt
    return fd


def _restore_file(box: Maildir, src: str, inner: str) -> int:
    """Write one file back below the Maildir without replacing anything; 1 if written."""
    rel_dir, _, name = inner.rpartition("/")
    key = message_key(inner)
    tmp_dir = (rel_dir.rpartition("/")[0] + "/tmp") if key is not None else rel_dir
    tmp_dir = tmp_dir.lstrip("/")
    dest_fd = _open_dirs(box, rel_dir)
    tmp_fd = _open_dirs(box, tmp_dir) if tmp_dir != rel_dir else os.dup(dest_fd)
    tmp_name = f".restore.{os.getpid()}.{time.monotonic_ns()}.{name[:100]}"
    try:
        _copy_into(src, tmp_name, tmp_fd, box.owner)
        try:
            os.link(tmp_name, name, src_dir_fd=tmp_fd, dst_dir_fd=dest_fd, follow_symlinks=False)
        except FileExistsError:
            return 0  # arrived meanwhile: never replaced
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp_name, dir_fd=tmp_fd)
        os.fsync(dest_fd)
        return 1
    finally:
        os.close(tmp_fd)
        os.close(dest_fd)


def _copy_into(src: str, name: str, dir_fd: int, owner: tuple[int, int] | None) -> None:
    st = os.lstat(src)
    if not stat.S_ISREG(st.st_mode):
        raise BackupError(f"{src}: not a regular file in the backup")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fout = os.open(name, flags, FILE_MODE, dir_fd=dir_fd)
    try:
        if owner is not None:
            os.fchown(fout, *owner)
        with open(src, "rb") as fin:
            while chunk := fin.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fout, view) :]
        os.fsync(fout)
    finally:
        os.close(fout)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dir_fd, follow_symlinks=False)


def recalculate(settings: Settings, db: Database, address: str, path: str) -> None:
    """``maildirsize`` and ``quota_usage`` of a restored mailbox (as ``quota recalc``)."""
    from mailwarden.delivery.quota import recalc_maildir

    with db.read() as tx:
        rows = quota.mailboxes(tx, address=address)
    if not rows:
        return  # the mailbox is gone from the database: nothing to count against
    row = rows[0]
    mail = settings.mail
    owner = (mail.uid, mail.gid) if os.geteuid() == 0 else None
    used = recalc_maildir(
        mail.root, path, int(row["quota_bytes"]), int(row["quota_messages"]), owner
    )
    nbytes, count = (used.bytes, used.messages) if used is not None else (0, 0)
    with db.transaction() as tx:
        quota.set_usage(tx, int(row["id"]), nbytes, count, int(time.time()))


def database_check(settings: Settings, backup: str, m: Manifest) -> str:
    """The dump's path once it is of the configured dialect and passes its checks."""
    dialect = parse_url(settings.database.url).dialect
    if m.database["dialect"] != dialect:
        raise BackupError(
            f"backup {m.name} holds a {m.database['dialect']} dump; the database is {dialect}"
        )
    path = os.path.join(backup, mf.safe_relpath(m.database["file"]))
    if not os.path.isfile(path) or mf.sha256_file(path) != m.database["sha256"]:
        raise BackupError(f"backup {m.name}: the database dump does not match its checksum")
    problem = dumps.check_dump(path)
    if problem:
        raise BackupError(f"backup {m.name}: {problem}")
    return path


def restore_database(settings: Settings, path: str) -> None:
    dumps.restore(settings.database.url, path)
