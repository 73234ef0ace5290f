"""``mailwarden quota show|list``: mailbox usage against its quota.

``quota show ADDRESS [--json]``
    the limits of a mailbox (bytes, messages; 0 = unlimited) and its usage as last
    recorded by the delivery agent (``-`` when nothing was delivered yet).
``quota list [--domain DOMAIN] [--over PERCENT] [--json]``
    all mailboxes (or those of one domain); ``--over 90`` lists only mailboxes at or
    above 90 % of a limit. ``percent`` is the higher of bytes and messages used.

Limits are changed with ``mailwarden user``; usage comes from ``maildirsize``.
Errors: unknown mailbox or domain, a percent that is not a number >= 0.
"""

from __future__ import annotations

import argparse
from typing import Any

from mailwarden.address import normalize_domain
from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.store import quota, scopes
from mailwarden.units import format_iso, format_size, format_size_limit

COLUMNS = ["address", "quota", "used", "messages", "percent"]


def register(sub: Subparsers) -> None:
    verbs = command(sub, "quota", "mailbox usage against quota")
    v = verbs.add_parser("show", help="usage of one mailbox")
    v.add_argument("address", metavar="ADDRESS")
    add_json(v)
    v.set_defaults(handler=cmd_show)
    v = verbs.add_parser("list", help="usage of all mailboxes")
    v.add_argument("--domain", metavar="DOMAIN", help="only this domain")
    v.add_argument("--over", metavar="PERCENT", help="only mailboxes at or above PERCENT")
    add_json(v)
    v.set_defaults(handler=cmd_list)


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.db().read() as tx:
        box = scopes.mailbox(tx, args.address)
        rows = quota.report(tx, address=box.address)
    record = _record(rows[0])
    ctx.show(record if ctx.json else _display(record))
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    over = _percent(args.over) if args.over is not None else None
    domain = normalize_domain(args.domain) if args.domain else None
    with ctx.db().read() as tx:
        if domain is not None:
            scopes.local_domain(tx, domain)
        rows = [_record(r) for r in quota.report(tx, domain=domain)]
    if over is not None:
        rows = [r for r in rows if r["percent"] is not None and r["percent"] >= over]
    ctx.table(rows if ctx.json else [_display(r) for r in rows], COLUMNS)
    return 0


def usage_percent(used: int | None, limit: int) -> float | None:
    """Percent of ``limit`` used, None when unlimited (0) or unknown."""
    if used is None or limit <= 0:
        return None
    return round(100.0 * used / limit, 1)


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """Raw numbers (JSON): limits 0 = unlimited, usage None = unknown."""
    limit_b, limit_m = int(row["quota_bytes"]), int(row["quota_messages"])
    used_b = None if row["bytes"] is None else int(row["bytes"])
    used_m = None if row["messages"] is None else int(row["messages"])
    shares = [usage_percent(used_b, limit_b), usage_percent(used_m, limit_m)]
    known = [p for p in shares if p is not None]
    return {
        "address": str(row["address"]),
        "quota_bytes": limit_b,
        "quota_messages": limit_m,
        "used_bytes": used_b,
        "used_messages": used_m,
        "percent": max(known) if known else None,
        "updated": format_iso(None if row["updated_at"] is None else int(row["updated_at"])),
    }


def _display(rec: dict[str, Any]) -> dict[str, Any]:
    """The same record for people: sizes as 500M, limits of 0 as unlimited."""
    limit_b, limit_m = rec["quota_bytes"], rec["quota_messages"]
    used_b, used_m = rec["used_bytes"], rec["used_messages"]
    percent = rec["percent"]
    return {
        "address": rec["address"],
        "quota": format_size_limit(limit_b) + (f", {limit_m} messages" if limit_m else ""),
        "used": None if used_b is None else format_size(used_b),
        "messages": used_m,
        "percent": None if percent is None else f"{percent:g}%",
        "updated": rec["updated"],
    }


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"invalid --over {text!r}: expected a percentage such as 90") from None
    if not 0 <= value < float("inf"):
        raise UsageError(f"invalid --over {text!r}: must be a number >= 0")
    return value
