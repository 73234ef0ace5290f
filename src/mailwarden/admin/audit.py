"""``mailwarden audit list [--since WHEN] [--domain D] [--limit N] [--json]``: the audit
trail, newest first.

Every change made through the CLI, the REST API or ``/me`` is one row: when, who
(``cli:root@host``, ``api:token@ip``), the action (``mailbox.add`` ...), the object, its
domain, and with ``--json`` the record before and after (never a password or token).
``--since`` takes a date (``2026-12-01``), an ISO time or a duration back (``2h``,
``7d``).

Errors (one line, exit 1): a bad ``--since`` or ``--limit``, an invalid domain name.
"""

from __future__ import annotations

import argparse
import time

from mailwarden import units
from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.ops import audit as ops


def register(sub: Subparsers) -> None:
    verbs = command(sub, "audit", "who changed what, when, from where")
    v = verbs.add_parser("list", help="list changes, newest first")
    v.add_argument("--since", metavar="WHEN", help="date, ISO time or duration back (7d)")
    v.add_argument("--domain", metavar="D", help="only changes of this domain")
    v.add_argument("--limit", metavar="N", type=int, default=100, help="default 100")
    add_json(v)
    v.set_defaults(handler=cmd_list)


def since(text: str | None) -> int | None:
    """``--since``: a duration back from now, else a date or ISO time."""
    if text is None:
        return None
    try:
        return int(time.time()) - units.parse_duration(text)
    except UsageError:
        return units.parse_when(text, "--since")


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    got = ops.page(
        ctx.ops, ctx.actor, since=since(args.since), domain=args.domain, limit=args.limit
    )
    ctx.table(got.items, ["at", "actor", "action", "object"])
    return 0
