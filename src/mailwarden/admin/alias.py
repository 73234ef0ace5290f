"""``mailwarden alias add|list|remove``: addresses that deliver elsewhere.

``add SOURCE DEST...``: SOURCE is ``name@domain`` or ``@domain`` (catch-all: every address
of the domain that is neither a mailbox nor an exact alias); its domain must be a local
domain (for an alias domain, add the alias to the domain it points at). Each DEST is an
address or the word ``discard`` (mail is accepted and thrown away). A DEST in a domain
we host must exist; external addresses are taken as given. Adding to an existing SOURCE
adds destinations. The command is refused when SOURCE is a mailbox (use
``forward set``), when it would exceed the domain's alias limit (distinct sources), and
when mail could come back to SOURCE through aliases, forwards or alias domains.

``list [--domain D]`` shows one row per source with its destinations.
``remove SOURCE [DEST...]`` removes the given destinations, or all of them.

Each command is one transaction: when any destination is refused, nothing is added.
Errors (one line, exit 1): invalid address, unknown or non-local domain, mailbox with
that address, alias limit, missing local destination, mail loop (the path is shown),
unknown alias.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.ops import aliases as ops


def register(sub: Subparsers) -> None:
    verbs = command(sub, "alias", "aliases and catch-alls")
    v = verbs.add_parser("add", help="add an alias (SOURCE is x@domain or @domain)")
    v.add_argument("source", metavar="SOURCE")
    v.add_argument("destinations", metavar="DEST", nargs="+", help="address or 'discard'")
    add_json(v)
    v.set_defaults(handler=cmd_add)
    v = verbs.add_parser("list", help="list aliases, one row per source")
    v.add_argument("--domain", metavar="D", help="only this domain")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("remove", help="remove an alias or some of its destinations")
    v.add_argument("source", metavar="SOURCE")
    v.add_argument("destinations", metavar="DEST", nargs="*")
    add_json(v)
    v.set_defaults(handler=cmd_remove)


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    alias = ops.add(ctx.ops, ctx.actor, args.source, args.destinations)
    targets = ops.parse_destinations(args.destinations, ctx.settings.mail.recipient_delimiter)
    ctx.done(
        f"added alias {alias['source']} -> {', '.join(targets)}",
        source=alias["source"],
        destinations=targets,
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.list_all(ctx.ops, ctx.actor, args.domain)
    for row in rows:
        del row["domain"]
    ctx.table(rows, ["source", "destinations", "active"])
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    result = ops.remove(ctx.ops, ctx.actor, args.source, args.destinations)
    source, removed = result.source, result.removed
    if args.destinations:
        text = f"removed {removed} destination{'s' if removed != 1 else ''} of alias {source}"
    else:
        text = f"removed alias {source}"
    ctx.done(text, source=source, removed=removed)
    return 0
