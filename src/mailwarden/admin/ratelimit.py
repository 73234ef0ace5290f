"""``mailwarden ratelimit set|list|remove``: how much a login or client may send.

``ratelimit set SCOPE --per hour|day [--messages N] [--recipients N]``
    SCOPE is a mailbox address (the SASL login), a local domain (the default for each of
    its mailboxes, counted per mailbox; a mailbox's own limit wins) or a client address
    or CIDR network (one counter for the network). 0 means unlimited; an option not
    given keeps its value (0 for a new limit).
``ratelimit list [--json]``             all limits.
``ratelimit remove SCOPE --per hour|day``

The policy daemon enforces them (DSN 4.7.1) and counts only mail that was accepted.
Errors: unknown domain or mailbox, an invalid network, period or number.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.ops import ratelimit as ops
from mailwarden.units import format_count_limit, parse_count


def register(sub: Subparsers) -> None:
    verbs = command(sub, "ratelimit", "sending limits per login, domain or client")
    v = verbs.add_parser("set", help="set a limit")
    v.add_argument("scope", metavar="SCOPE", help="address, domain, or client IP/CIDR")
    v.add_argument("--per", required=True, metavar="PERIOD", help="hour or day")
    v.add_argument("--messages", metavar="N", help="messages per period (0 = unlimited)")
    v.add_argument("--recipients", metavar="N", help="recipients per period (0 = unlimited)")
    add_json(v)
    v.set_defaults(handler=cmd_set)
    v = verbs.add_parser("list", help="list limits")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("remove", help="remove a limit")
    v.add_argument("scope", metavar="SCOPE")
    v.add_argument("--per", required=True, metavar="PERIOD", help="hour or day")
    add_json(v)
    v.set_defaults(handler=cmd_remove)


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    row = ops.set_limit(
        ctx.ops,
        ctx.actor,
        args.scope,
        args.per,
        messages=_count(args.messages, "--messages"),
        recipients=_count(args.recipients, "--recipients"),
    )
    period = row["period"]
    messages_text = format_count_limit(row["messages"])
    recipients_text = format_count_limit(row["recipients"])
    ctx.done(
        f"rate limit of {row['scope']} per {period}: {messages_text} messages, "
        f"{recipients_text} recipients",
        scope=row["scope"],
        period=period,
        messages=row["messages"],
        recipients=row["recipients"],
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.list_limits(ctx.ops, ctx.actor)
    ctx.table(rows, ["scope", "kind", "period", "messages", "recipients"])
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    scope, period = ops.remove(ctx.ops, ctx.actor, args.scope, args.per)
    ctx.done(f"rate limit of {scope} per {period} removed", scope=scope, period=period)
    return 0


def _count(text: str | None, option: str) -> int | None:
    return None if text is None else parse_count(text, option)
