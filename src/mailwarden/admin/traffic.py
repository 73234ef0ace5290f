"""``mailwarden traffic [--day YYYY-MM-DD] [--json]``: mail in and out per local domain.

One line per local domain for one UTC day (default: today): messages and bytes received
(delivered to its mailboxes) and sent (accepted from its logins), zero where nothing was
counted. The counters are kept by the delivery agent and the policy daemon.
Errors: a day that is not a valid ``YYYY-MM-DD`` date.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from mailwarden.admin.args import Subparsers
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.store import traffic
from mailwarden.units import parse_day


def register(sub: Subparsers) -> None:
    p = sub.add_parser("traffic", help="messages and bytes per local domain and day")
    p.add_argument("--day", metavar="YYYY-MM-DD", help="UTC day (default: today)")
    add_json(p)
    p.set_defaults(handler=cmd_traffic)


def cmd_traffic(ctx: Context, args: argparse.Namespace) -> int:
    day = parse_day(args.day) if args.day else datetime.now(UTC).date().isoformat()
    with ctx.db().read() as tx:
        rows = traffic.report(tx, day)
    if ctx.json:
        ctx.show({"day": day, "domains": rows})
        return 0
    ctx.say(f"traffic on {day} (UTC)")
    ctx.table(rows, ["domain", *traffic.COUNTERS])
    return 0
