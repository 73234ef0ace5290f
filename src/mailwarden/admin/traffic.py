"""``mailwarden traffic``: mail in and out per local domain and UTC day (H-Sphere's report).

Two forms:

``traffic [--day YYYY-MM-DD] [--json]``
    One day (default: today): one line per local domain, zeros where nothing was counted.
``traffic --from YYYY-MM-DD [--to YYYY-MM-DD] [--domain D] [--json]``
    A range (``--to`` defaults to today, or to ``--from`` when that is later): one line per
    day and domain that has counts, then the total per domain and the grand total. The
    rows are ``ops.traffic.report``'s (the API's ``GET /traffic`` answers the same).

What is counted: messages and bytes received (delivered to its mailboxes: ``in``) and
sent (accepted from its logins: ``out``), by the milter or by the delivery agent and
policyd, as ``[traffic] counter`` says (``mailwarden.accounting``; docs/traffic.md).
Errors (one line, exit 1): a day that is not a valid ``YYYY-MM-DD`` date, ``--to`` before
``--from``, a range over 366 days, ``--day`` together with the range options, an unknown
domain.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from mailwarden.admin.args import Subparsers
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.ops import traffic as ops_traffic
from mailwarden.store import traffic
from mailwarden.units import parse_day


def register(sub: Subparsers) -> None:
    p = sub.add_parser("traffic", help="messages and bytes per local domain and day")
    p.add_argument("--day", metavar="YYYY-MM-DD", help="one UTC day (default: today)")
    p.add_argument("--from", dest="since", metavar="YYYY-MM-DD", help="first UTC day of a range")
    p.add_argument("--to", dest="until", metavar="YYYY-MM-DD", help="last UTC day (default: today)")
    p.add_argument("--domain", metavar="DOMAIN", help="only this local domain (with --from)")
    add_json(p)
    p.set_defaults(handler=cmd_traffic)


def cmd_traffic(ctx: Context, args: argparse.Namespace) -> int:
    ranged = args.since is not None or args.until is not None or args.domain is not None
    if ranged:
        if args.day is not None:
            raise UsageError("use either --day or --from/--to/--domain, not both")
        return _range(ctx, args)
    day = parse_day(args.day) if args.day else _today()
    with ctx.db().read() as tx:
        rows = traffic.report(tx, day)
    if ctx.json:
        ctx.show({"day": day, "domains": rows})
        return 0
    ctx.say(f"traffic on {day} (UTC)")
    ctx.table(rows, ["domain", *traffic.COUNTERS])
    return 0


def _range(ctx: Context, args: argparse.Namespace) -> int:
    if args.since is None:
        raise UsageError("--to and --domain need --from YYYY-MM-DD")
    since = parse_day(args.since)
    until = parse_day(args.until) if args.until else max(since, _today())
    if until < since:
        raise UsageError(f"--to {until} is before --from {since}")
    rows = ops_traffic.report(ctx.ops, ctx.actor, since=since, until=until, domain=args.domain)
    totals = _totals(rows)
    if ctx.json:
        ctx.show(
            {
                "from": since,
                "to": until,
                "domain": args.domain,
                "days": rows,
                "domains": totals[:-1],
                "total": totals[-1],
            }
        )
        return 0
    ctx.say(f"traffic {since} .. {until} (UTC)")
    ctx.table(rows + [{"day": "total", **t} for t in totals], ["day", "domain", *traffic.COUNTERS])
    return 0


def _totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sums per domain (by name), then the grand total (domain ``*``)."""
    sums: dict[str, dict[str, Any]] = {}
    grand: dict[str, Any] = {"domain": "*", **dict.fromkeys(traffic.COUNTERS, 0)}
    for row in rows:
        entry = sums.setdefault(
            row["domain"], {"domain": row["domain"], **dict.fromkeys(traffic.COUNTERS, 0)}
        )
        for c in traffic.COUNTERS:
            entry[c] += row[c]
            grand[c] += row[c]
    return [sums[name] for name in sorted(sums)] + [grand]


def _today() -> str:
    return datetime.now(UTC).date().isoformat()
