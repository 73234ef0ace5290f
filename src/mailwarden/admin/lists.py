"""``mailwarden list add|remove|show|list|subscribe|unsubscribe|members|moderate|sync``:
mailing lists run by mlmmj (docs/lists.md).

``add LIST --owner ADDR... [--moderated] [--open]`` creates ``LIST`` (``name@domain`` of
a local domain) and its mlmmj directory below ``[lists] spool``; by default only members
may post (``--open``: anyone). ``subscribe LIST ADDR... [--mode normal|digest|nomail]
[--moderator]`` adds members without asking them (people subscribe themselves by mail to
``name+subscribe@domain`` and confirm); ``unsubscribe LIST ADDR...`` removes them.
``members LIST`` lists them, including those who subscribed by mail. ``moderate LIST
[--on|--off] [--subscribers-only yes|no] [--add-moderator ADDR] [--remove-moderator
ADDR]`` changes who may post and who approves. ``remove LIST`` moves the directory to
``<spool>.removed/``. ``sync [LIST]`` rewrites the directories from the schema.

Errors (one line, exit 1): invalid or taken address (a mailbox or alias has it), unknown
or non-local domain, unknown list, no owner, a moderator who is not a member, a list
directory that cannot be written (the change is not made).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

from mailwarden import units
from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.ops import lists as ops

Handler = Callable[[Context, argparse.Namespace], int]


def register(sub: Subparsers) -> None:
    verbs = command(sub, "list", "mailing lists run by mlmmj: members, moderation")
    v = verbs.add_parser("add", help="create a mailing list")
    v.add_argument("address", metavar="LIST")
    v.add_argument("--owner", action="append", default=[], metavar="ADDR", required=True)
    v.add_argument("--moderated", action="store_true", help="posts wait for a moderator")
    v.add_argument("--open", action="store_true", help="anyone may post, not only members")
    add_json(v)
    v.set_defaults(handler=cmd_add)
    v = verbs.add_parser("remove", help="remove a list (its directory is kept aside)")
    v.add_argument("address", metavar="LIST")
    add_json(v)
    v.set_defaults(handler=cmd_remove)
    v = verbs.add_parser("show", help="show a list")
    v.add_argument("address", metavar="LIST")
    add_json(v)
    v.set_defaults(handler=cmd_show)
    v = verbs.add_parser("list", help="list the mailing lists")
    v.add_argument("--domain", metavar="D", help="only this domain")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("subscribe", help="add members (no confirmation asked)")
    v.add_argument("address", metavar="LIST")
    v.add_argument("members", metavar="ADDR", nargs="+")
    v.add_argument("--mode", default="normal", choices=("normal", "digest", "nomail"))
    v.add_argument("--moderator", action="store_true", help="also a moderator")
    add_json(v)
    v.set_defaults(handler=cmd_subscribe)
    v = verbs.add_parser("unsubscribe", help="remove members")
    v.add_argument("address", metavar="LIST")
    v.add_argument("members", metavar="ADDR", nargs="+")
    add_json(v)
    v.set_defaults(handler=cmd_unsubscribe)
    v = verbs.add_parser("members", help="list the members of a list")
    v.add_argument("address", metavar="LIST")
    add_json(v)
    v.set_defaults(handler=cmd_members)
    v = verbs.add_parser("moderate", help="moderation, who may post, moderators")
    v.add_argument("address", metavar="LIST")
    onoff = v.add_mutually_exclusive_group()
    onoff.add_argument("--on", dest="moderated", action="store_const", const=True)
    onoff.add_argument("--off", dest="moderated", action="store_const", const=False)
    v.add_argument("--subscribers-only", metavar="yes|no", help="only members may post")
    v.add_argument("--add-moderator", action="append", default=[], metavar="ADDR")
    v.add_argument("--remove-moderator", action="append", default=[], metavar="ADDR")
    add_json(v)
    v.set_defaults(handler=cmd_moderate)
    v = verbs.add_parser("sync", help="rewrite list directories from the database")
    v.add_argument("address", metavar="LIST", nargs="?")
    add_json(v)
    v.set_defaults(handler=cmd_sync)


def _files(handler: Handler) -> Handler:
    """A list directory that cannot be written is an operator's problem: one line."""

    @functools.wraps(handler)
    def run(ctx: Context, args: argparse.Namespace) -> int:
        try:
            return handler(ctx, args)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise UsageError(f"list directory: {exc.strerror or exc}{where}") from None

    return run


def _spool(ctx: Context) -> ops.Spool:
    return ops.Spool.from_settings(ctx.settings.lists)


@_files
def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    rec = ops.add(
        ctx.ops,
        ctx.actor,
        _spool(ctx),
        args.address,
        args.owner,
        moderated=args.moderated,
        subscribers_only=not args.open,
    )
    ctx.done(
        f"added list {rec['address']} ({rec['directory']})",
        address=rec["address"],
        directory=rec["directory"],
    )
    return 0


@_files
def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    moved = ops.remove(ctx.ops, ctx.actor, _spool(ctx), args.address)
    where = f"; its directory is now {moved}" if moved else ""
    ctx.done(f"removed list {ops.parse(ctx.ops, args.address)}{where}", moved_to=moved)
    return 0


@_files
def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ops.show(ctx.ops, ctx.actor, _spool(ctx), args.address))
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.all_lists(ctx.ops, ctx.actor, args.domain)
    ctx.table(rows, ["address", "owners", "moderated", "subscribers_only", "members"])
    return 0


@_files
def cmd_subscribe(ctx: Context, args: argparse.Namespace) -> int:
    added, changed = ops.subscribe(
        ctx.ops,
        ctx.actor,
        _spool(ctx),
        args.address,
        args.members,
        mode=args.mode,
        moderator=True if args.moderator else None,
    )
    parts = []
    if added:
        parts.append(f"subscribed {', '.join(added)}")
    if changed:
        parts.append(f"updated {', '.join(changed)}")
    ctx.done(f"{'; '.join(parts)} ({args.mode})", list=args.address, added=added, changed=changed)
    return 0


@_files
def cmd_unsubscribe(ctx: Context, args: argparse.Namespace) -> int:
    removed = ops.unsubscribe(ctx.ops, ctx.actor, _spool(ctx), args.address, args.members)
    text = f"unsubscribed {', '.join(removed)}" if removed else "no such members"
    ctx.done(text, list=args.address, removed=removed)
    return 0


@_files
def cmd_members(ctx: Context, args: argparse.Namespace) -> int:
    ctx.table(
        ops.members(ctx.ops, ctx.actor, _spool(ctx), args.address),
        ["address", "mode", "moderator"],
    )
    return 0


@_files
def cmd_moderate(ctx: Context, args: argparse.Namespace) -> int:
    subs_only = None
    if args.subscribers_only is not None:
        subs_only = units.parse_yes_no(args.subscribers_only, "--subscribers-only")
    rec = ops.moderate(
        ctx.ops,
        ctx.actor,
        _spool(ctx),
        args.address,
        moderated=args.moderated,
        subscribers_only=subs_only,
        add_moderators=args.add_moderator,
        remove_moderators=args.remove_moderator,
    )
    mods = ", ".join(rec["moderators"]) or "the owners"
    posting = "members only" if rec["subscribers_only"] else "anyone"
    state = f"moderated by {mods}" if rec["moderated"] else "not moderated"
    ctx.done(f"{rec['address']}: {state}; {posting} may post", **rec)
    return 0


@_files
def cmd_sync(ctx: Context, args: argparse.Namespace) -> int:
    done = ops.sync(ctx.ops, ctx.actor, _spool(ctx), args.address)
    ctx.done(f"wrote {len(done)} list director{'y' if len(done) == 1 else 'ies'}", lists=done)
    return 0
