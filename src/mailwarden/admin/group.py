"""``mailwarden group add|list|remove``: which services a set of mailboxes may use.

``add NAME [--no-imap] [--no-pop3] [--no-smtp] [--no-sieve]`` creates a group that allows
every service not switched off. Dovecot and Courier read the flags through the
``dovecot_users`` and ``courier_users`` views. Mailboxes join a group with
``user add|set --group NAME``; without one they are in ``default``.
``list`` shows each group's services and how many mailboxes use it.
``remove NAME`` refuses while mailboxes use the group, and for ``default``.

Errors (one line, exit 1): invalid name, group exists, unknown group, group in use,
removing ``default``.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.ops import groups as ops


def register(sub: Subparsers) -> None:
    verbs = command(sub, "group", "mail groups: which services mailboxes may use")
    v = verbs.add_parser("add", help="add a group")
    v.add_argument("name", metavar="NAME")
    for service in ops.SERVICES:
        v.add_argument(f"--no-{service}", action="store_true", help=f"deny {service.upper()}")
    add_json(v)
    v.set_defaults(handler=cmd_add)
    v = verbs.add_parser("list", help="list groups")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("remove", help="remove an unused group")
    v.add_argument("name", metavar="NAME")
    add_json(v)
    v.set_defaults(handler=cmd_remove)


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    allowed = {service: not getattr(args, f"no_{service}") for service in ops.SERVICES}
    group = ops.add(ctx.ops, ctx.actor, args.name, allowed)
    name = group["name"]
    denied = [s for s, ok in allowed.items() if not ok]
    text = f"added group {name}" + (f" (no {', '.join(denied)})" if denied else "")
    ctx.done(text, group=name, **allowed)
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.list_all(ctx.ops, ctx.actor)
    ctx.table(rows, ["name", *ops.SERVICES, "mailboxes"])
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    name = ops.remove(ctx.ops, ctx.actor, args.name)
    ctx.done(f"removed group {name}", group=name)
    return 0
