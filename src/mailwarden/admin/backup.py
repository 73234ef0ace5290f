"""``mailwarden backup run|list|verify|restore``: rolling backups and restore.

``backup run [--json]``
    a new backup in ``[backup] dir`` (default /var/backups/mailwarden): database dump,
    config, hard-linked snapshot of the mail root; then the oldest beyond ``[backup]
    keep`` (default 7) are removed. On a terminal a progress line on stderr. The systemd
    timer contrib/systemd/mailwarden-backup.timer runs it daily. docs/backups.md.
``backup list [--json]``
    the complete backups, oldest first.
``backup verify [NAME] [--quick] [--json]``
    check a backup (default the newest) against its manifest: every file's size and
    checksum (``--quick``: sizes only), the database dump opens. Exit 1 when a problem
    is found; the problems are listed on stdout.
``backup restore [NAME] (--mailbox ADDRESS | --domain DOMAIN | --all | --database)
[--dry-run] [--yes] [--json]``
    from backup NAME (default the newest). A mailbox, a domain's or every mailbox is merged
    back: messages
    missing from the live Maildir are copied back, nothing present is overwritten or
    deleted, then ``maildirsize`` and the recorded usage are recalculated. ``--database``
    replaces the whole database with the dump (asks for ``--yes``). ``--dry-run`` shows
    what would change and changes nothing.

Errors (one line, exit 1): disk full or another failure during a run (the partial backup
is removed, earlier ones kept), no such backup, a mailbox or domain the backup does not
hold, an unsafe path in a manifest, a dump that fails its checks.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailwarden.address import normalize_domain, parse_address
from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.units import format_iso


def register(sub: Subparsers) -> None:
    verbs = command(sub, "backup", "rolling backups of database, mail and config; restore")
    v = verbs.add_parser("run", help="make a backup now, then remove the oldest beyond keep")
    add_json(v)
    v.set_defaults(handler=cmd_run)
    v = verbs.add_parser("list", help="the backups kept")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("verify", help="check a backup against its manifest")
    v.add_argument("name", metavar="NAME", nargs="?", help="backup (default: the newest)")
    v.add_argument("--quick", action="store_true", help="sizes only, no checksums")
    add_json(v)
    v.set_defaults(handler=cmd_verify)
    v = verbs.add_parser("restore", help="restore a mailbox, a domain or the database")
    v.add_argument("name", metavar="NAME", nargs="?", help="backup (default: the newest)")
    what = v.add_mutually_exclusive_group(required=True)
    what.add_argument("--mailbox", metavar="ADDRESS", help="merge one mailbox back")
    what.add_argument("--domain", metavar="DOMAIN", help="merge every mailbox of a domain back")
    what.add_argument("--all", action="store_true", help="merge every mailbox back")
    what.add_argument("--database", action="store_true", help="replace the database")
    v.add_argument("--dry-run", action="store_true", help="show what would change")
    v.add_argument("--yes", action="store_true", help="confirm replacing the database")
    add_json(v)
    v.set_defaults(handler=cmd_restore)


def human(size: int) -> str:
    """``20296890`` -> ``19.4 MiB``: sizes for people (JSON keeps the bytes)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


class _Progress:
    """``backup: 1200/5000 files`` rewritten in place on a terminal (stderr)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        percent = done * 100 // total if total else 100
        if self.enabled and (percent != self.last or done == total):
            self.last = percent
            sys.stderr.write(f"\r\033[Kbackup: {done}/{total} files ({percent}%)")
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.backup import run

    progress = _Progress(sys.stderr.isatty() and not ctx.json)
    try:
        result = run.run(ctx.settings, ctx.db(), progress)
    finally:
        progress.clear()
    s = result.stats
    ctx.done(
        f"backup {result.name}: {s.files} files ({human(s.bytes)}), "
        f"{s.copied_files} copied ({human(s.copied_bytes)}), {s.linked_files} hard-linked "
        f"to the previous backup, {result.seconds:.1f} s"
        + (f"; removed {', '.join(result.removed)}" if result.removed else ""),
        name=result.name,
        path=result.path,
        files=s.files,
        bytes=s.bytes,
        copied_files=s.copied_files,
        copied_bytes=s.copied_bytes,
        linked_files=s.linked_files,
        seconds=round(result.seconds, 3),
        removed=list(result.removed),
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.backup import run

    rows = run.describe(ctx.settings.backup.dir)
    for row in rows:
        row["created"] = format_iso(row["created"])
    if not ctx.json:
        rows = [r | {"bytes": human(r["bytes"])} for r in rows]
    ctx.table(rows, ["name", "created", "database", "mailboxes", "files", "bytes"])
    return 0


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.backup import run
    from mailwarden.backup.manifest import BackupError

    path = run.find(ctx.settings.backup.dir, args.name)
    name = path.rstrip("/").rpartition("/")[2]
    problems = run.verify(path, quick=args.quick)
    if ctx.json:
        ctx.show({"name": name, "ok": not problems, "problems": problems})
    else:
        for problem in problems:
            ctx.out.write(f"{name}: {problem}\n")
    if problems:
        if ctx.json:
            return 1
        raise BackupError(f"backup {name}: {len(problems)} problem(s) found")
    ctx.say(f"backup {name}: ok")
    return 0


def cmd_restore(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.backup import manifest, run

    path = run.find(ctx.settings.backup.dir, args.name)
    m = manifest.load(path)
    if args.database:
        return _restore_database(ctx, args, path, m)
    from mailwarden.backup import restore

    domain = normalize_domain(args.domain) if args.domain else None
    mailbox = str(parse_address(args.mailbox)) if args.mailbox else None
    plans = restore.select(m, mailbox=mailbox, domain=domain, every=args.all)
    planned = restore.plan(path, ctx.settings.mail.root, plans)
    rows = [
        {"address": p.address, "restore": len(p.restore), "present": p.present} for p in planned
    ]
    total = sum(len(p.restore) for p in planned)
    if args.dry_run:
        return _show_plan(ctx, m.name, planned, rows, total)
    copied = restore.apply(path, ctx.settings, ctx.db(), planned)
    ctx.done(
        f"restored {copied} file(s) from backup {m.name} into {len(planned)} mailbox(es); "
        "nothing present was changed; maildirsize recalculated",
        backup=m.name,
        restored=copied,
        mailboxes=rows,
    )
    return 0


def _show_plan(
    ctx: Context, name: str, planned: list[Any], rows: list[dict[str, Any]], total: int
) -> int:
    if ctx.json:
        files = {p.address: [e.path for e in p.restore] for p in planned}
        ctx.show(
            {"backup": name, "dry_run": True, "restore": total, "mailboxes": rows, "files": files}
        )
        return 0
    for p in planned:
        for e in p.restore:
            ctx.out.write(f"would restore {e.path} ({human(e.size)})\n")
    ctx.table(rows, ["address", "restore", "present"])
    ctx.say(f"dry run: {total} file(s) would be restored from backup {name}; nothing changed")
    return 0


def _restore_database(ctx: Context, args: argparse.Namespace, path: str, m: Any) -> int:
    from mailwarden.backup import restore
    from mailwarden.store import backup as dumps

    dump = restore.database_check(ctx.settings, path, m)
    with ctx.database().read() as tx:
        now = dumps.counts(tx)
    then = dumps.counts_sqlite(dump) if dump.endswith(dumps.SQLITE_DUMP) else None
    facts: dict[str, Any] = {"backup": m.name, "now": now, "backup_counts": then}
    if args.dry_run:
        had = f" ({then['domains']} domains, {then['mailboxes']} mailboxes)" if then else ""
        message = (
            f"dry run: the database ({now['domains']} domains, {now['mailboxes']} mailboxes) "
            f"would be replaced by the dump of backup {m.name}{had}; nothing changed"
        )
        ctx.done(message, dry_run=True, **facts)
        return 0
    if not args.yes:
        raise UsageError("backup restore --database replaces the whole database: add --yes")
    ctx.close()  # no connection of ours holds a lock while the dump is loaded
    restore.restore_database(ctx.settings, dump)
    notes = [
        "reload Dovecot and Postfix (doveadm reload; postfix reload): their open database "
        "connections may fail one lookup after the restore",
        "a dump from an older mailwarden: run 'mailwarden db upgrade'",
    ]
    ctx.done(f"database replaced by the dump of backup {m.name}", notes=notes, **facts)
    return 0
