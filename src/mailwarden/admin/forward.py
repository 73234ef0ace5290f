"""``mailwarden forward set|clear|show``: send a mailbox's mail on to other addresses.

``set ADDRESS DEST... [--keep-copy]`` replaces the mailbox's forwards with DEST...;
without ``--keep-copy`` the mailbox itself no longer receives a copy. A mailbox cannot
forward to itself (that is what ``--keep-copy`` is for); a DEST in a domain we host must
exist; a forward that leads back to the mailbox through aliases, forwards or alias
domains is refused. ``clear`` removes all forwards (mail is delivered to the mailbox
again); ``show`` lists them with the keep-copy flag.

Errors (one line, exit 1): invalid address, unknown mailbox, self-forward, missing local
destination, mail loop (the path is shown). A refused ``set`` leaves the old forwards.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.ops import forwards as ops


def register(sub: Subparsers) -> None:
    verbs = command(sub, "forward", "forward a mailbox's mail")
    v = verbs.add_parser("set", help="replace the forwards of a mailbox")
    v.add_argument("address", metavar="ADDRESS")
    v.add_argument("destinations", metavar="DEST", nargs="+")
    v.add_argument("--keep-copy", action="store_true", help="also deliver to the mailbox")
    add_json(v)
    v.set_defaults(handler=cmd_set)
    v = verbs.add_parser("clear", help="remove all forwards of a mailbox")
    v.add_argument("address", metavar="ADDRESS")
    add_json(v)
    v.set_defaults(handler=cmd_clear)
    v = verbs.add_parser("show", help="show the forwards of a mailbox")
    v.add_argument("address", metavar="ADDRESS")
    add_json(v)
    v.set_defaults(handler=cmd_show)


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    result = ops.replace(
        ctx.ops, ctx.actor, args.address, args.destinations, keep_copy=args.keep_copy
    )
    addr, targets = result["address"], result["forwards"]
    copy = " (keeping a copy)" if args.keep_copy else ""
    ctx.done(
        f"{addr} forwards to {', '.join(targets)}{copy}",
        address=addr,
        forwards=targets,
        keep_copy=args.keep_copy,
    )
    return 0


def cmd_clear(ctx: Context, args: argparse.Namespace) -> int:
    addr = ops.parse(ctx.ops, args.address)
    removed = ops.clear(ctx.ops, ctx.actor, addr)
    plural = "s" if removed != 1 else ""
    ctx.done(
        f"removed {removed} forward{plural} of {addr}; mail is delivered to the mailbox",
        address=addr,
        removed=removed,
    )
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ops.show(ctx.ops, ctx.actor, args.address))
    return 0
