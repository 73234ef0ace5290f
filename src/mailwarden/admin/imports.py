"""``mailwarden import postfixadmin|vpopmail``: bring domains, mailboxes (with their
password hashes), aliases, forwards, alias domains and vacation replies over.

``import postfixadmin DB-URL [--domain D]... [--quota-multiplier N] [--cleartext]``
reads a PostfixAdmin 3.x database (``mysql://user:pw@host/postfixadmin`` or
``sqlite:////path``; a SELECT-only account is enough, nothing is written there).
``import vpopmail DIR`` reads vpopmail's home (``domains/*/vpasswd``, ``.qmail-*``).

Both print one line per object: ``add`` (would be / was written), ``same`` (already here
with the same values: re-running changes nothing and writes no audit row), ``conflict``
(here with other values: never overwritten) or ``unsupported`` (a password hash Dovecot
cannot verify: reported, never reset), then notes on what was skipped, then where each
domain's mail is (Maildirs are not moved). ``--dry-run`` stops there. Without it, any
conflict or unsupported object means nothing is written (exit 1) unless
``--skip-conflicts``: then every ``add`` is written, one transaction and one audit row
per object (actor ``import:postfixadmin`` / ``import:vpopmail``). ``--json`` prints
``{"items": [...], "notes": [...], "maildirs": [...], "written": bool}``.

Errors (one line, exit 1): bad URL or directory; a database that is not PostfixAdmin's;
conflicts or unsupported hashes without ``--skip-conflicts``; objects that failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mailwarden import address
from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.imports import apply as applying
from mailwarden.imports import plan as p
from mailwarden.imports import postfixadmin, vpopmail


def register(sub: Subparsers) -> None:
    verbs = command(sub, "import", "import from PostfixAdmin or vpopmail (hashes kept)")
    v = verbs.add_parser("postfixadmin", help="import a PostfixAdmin 3.x database")
    v.add_argument("url", metavar="DB-URL", help="mysql://user:pw@host/db or sqlite:////path")
    v.add_argument("--domain", action="append", default=[], metavar="D", help="only D (repeat)")
    v.add_argument(
        "--quota-multiplier", type=int, default=postfixadmin.DEFAULT_MULTIPLIER, metavar="N",
        help="PostfixAdmin's $CONF['quota_multiplier'] (bytes per quota MB; default 1024000)",
    )  # fmt: skip
    v.add_argument(
        "--cleartext", action="store_true",
        help="passwords without a {SCHEME} are clear text ($CONF['encrypt'] = 'cleartext')",
    )  # fmt: skip
    _common(v)
    v.set_defaults(handler=cmd_postfixadmin)
    v = verbs.add_parser("vpopmail", help="import a vpopmail tree (vpasswd, .qmail files)")
    v.add_argument("dir", metavar="DIR", type=Path, help="vpopmail's home (holds domains/)")
    _common(v)
    v.set_defaults(handler=cmd_vpopmail)


def _common(v: argparse.ArgumentParser) -> None:
    v.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    v.add_argument(
        "--skip-conflicts", action="store_true",
        help="write what can be added even when some objects conflict or are unsupported",
    )  # fmt: skip
    add_json(v)


def cmd_postfixadmin(ctx: Context, args: argparse.Namespace) -> int:
    source = postfixadmin.read(
        args.url, only=args.domain, multiplier=args.quota_multiplier, cleartext=args.cleartext
    )
    return run(ctx, args, source, "import:postfixadmin", "<postfixadmin maildir root>/")


def cmd_vpopmail(ctx: Context, args: argparse.Namespace) -> int:
    return run(ctx, args, vpopmail.read(args.dir), "import:vpopmail", "")


def run(ctx: Context, args: argparse.Namespace, source: p.Source, who: str, old_root: str) -> int:
    env = ctx.ops
    plan = p.make_plan(source, applying.existing(env, ctx.actor, source))
    maildirs = _maildirs(ctx, plan, old_root)
    write = not args.dry_run and (args.skip_conflicts or not plan.blocked)
    outcomes = applying.apply(env, plan, who) if write else []
    failed = [o for o in outcomes if o.result == "failed"]
    if ctx.json:
        _emit_json(ctx, plan, maildirs, outcomes, write)
    else:
        _emit_text(ctx, plan, maildirs, outcomes, write=write, dry=args.dry_run)
    if not args.dry_run and not write:
        counts = plan.counts()
        raise UsageError(
            f"nothing written: {counts['conflict']} conflict(s), {counts['unsupported']} "
            "unsupported; resolve them or use --skip-conflicts"
        )
    if failed:
        raise UsageError(f"{len(failed)} object(s) failed (listed above); the rest was written")
    return 0


def _maildirs(ctx: Context, plan: p.Plan, old_root: str) -> list[dict[str, str]]:
    found = []
    for item in plan.items:
        box = item.obj
        if item.kind == "mailbox" and item.status == "add" and isinstance(box, p.Mailbox):
            new = address.maildir_relpath(
                address.parse_address(box.address), ctx.settings.mail.layout
            )
            old = box.old_maildir if box.old_maildir.startswith("/") else old_root + box.old_maildir
            to = address.maildir_path(ctx.settings.mail.root, new) + "/"
            found.append({"address": box.address, "from": old, "to": to})
    return found


def _emit_json(ctx: Context, plan: p.Plan, maildirs: list[dict[str, str]],
               outcomes: list[applying.Outcome], write: bool) -> None:  # fmt: skip
    from mailwarden.admin import output

    result: dict[str, Any] = {
        "items": [i.as_json() for i in plan.items],
        "counts": plan.counts(),
        "notes": plan.notes,
        "maildirs": maildirs,
        "written": write,
        "results": [o.as_json() for o in outcomes],
    }
    output.emit_json(result, ctx.out)


def _emit_text(
    ctx: Context,
    plan: p.Plan,
    maildirs: list[dict[str, str]],
    outcomes: list[applying.Outcome],
    *,
    write: bool,
    dry: bool,
) -> None:
    out = ctx.out
    width = max((len(i.key) for i in plan.items), default=0)
    for item in plan.items:
        line = f"{item.status:<11} {item.kind:<8} {item.key:<{width}}  {item.detail}"
        out.write(line.rstrip() + "\n")
    for note in plan.notes:
        out.write(f"note: {note}\n")
    for o in outcomes:
        if o.result == "failed":
            out.write(f"failed: {o.item.kind} {o.item.key}: {o.detail}\n")
    counts = ", ".join(f"{n} {s}" for s, n in plan.counts().items())
    verb = "dry run, nothing written" if dry else ("written" if write else "nothing written")
    added = sum(1 for o in outcomes if o.result == "added")
    out.write(f"{counts} ({verb}{f': {added} added' if write else ''})\n")
    if maildirs and (write or dry):
        out.write("Maildirs are not moved; copy each mailbox's mail, e.g.:\n")
        for m in maildirs:
            out.write(f"  rsync -a {m['from']} {m['to']}\n")
