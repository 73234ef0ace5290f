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

from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.store import ratelimit, scopes

MAX_COUNT = 2**31 - 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ratelimit", help="sending limits per login, domain or client")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    v = verbs.add_parser("set", help="set a limit")
    v.add_argument("scope", metavar="SCOPE", help="address, domain, or client IP/CIDR")
    v.add_argument("--per", required=True, metavar="PERIOD", help="hour or day")
    v.add_argument("--messages", metavar="N", help="messages per period (0 = unlimited)")
    v.add_argument("--recipients", metavar="N", help="recipients per period (0 = unlimited)")
    v.set_defaults(handler=cmd_set)
    v = verbs.add_parser("list", help="list limits")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("remove", help="remove a limit")
    v.add_argument("scope", metavar="SCOPE")
    v.add_argument("--per", required=True, metavar="PERIOD", help="hour or day")
    v.set_defaults(handler=cmd_remove)


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    period = ratelimit.check_period(args.per)
    messages = _count(args.messages, "--messages")
    recipients = _count(args.recipients, "--recipients")
    with ctx.db().transaction() as tx:
        scope = scopes.resolve(tx, args.scope, clients=True, allow_global=False)
        row = ratelimit.set_limit(tx, scope, period, messages=messages, recipients=recipients)
    ctx.say(
        f"rate limit of {row['scope']} per {period}: {_show(row['messages'])} messages, "
        f"{_show(row['recipients'])} recipients"
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.db().read() as tx:
        rows = ratelimit.list_limits(tx)
    ctx.table(rows, ["scope", "kind", "period", "messages", "recipients"])
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    period = ratelimit.check_period(args.per)
    parsed = scopes.parse_scope(args.scope, clients=True, allow_global=False)
    with ctx.db().transaction() as tx:
        ratelimit.remove(tx, parsed.name, period)
    ctx.say(f"rate limit of {parsed.name} per {period} removed")
    return 0


def _count(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise UsageError(
            f"invalid {option} {text!r}: expected a whole number (0 = unlimited)"
        ) from None
    if not 0 <= value <= MAX_COUNT:
        raise UsageError(f"invalid {option} {text!r}: must be between 0 and {MAX_COUNT}")
    return value


def _show(value: int) -> str:
    return "unlimited" if value == 0 else str(value)
