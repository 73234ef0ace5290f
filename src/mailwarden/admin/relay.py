"""``mailwarden relay add|list|remove|purge``: clients that may relay without SMTP AUTH.

``relay add NETWORK [--expires DURATION] [--note TEXT]``
    NETWORK is an IPv4/IPv6 address, a CIDR network (host bits set are cleared, and the
    command says so) or a Sambar-style wildcard such as ``140.175.165.*`` or ``10.*.*.*``.
    ``--expires 2h`` makes a temporary entry (POP-before-SMTP style). Entries covering
    every address (``0.0.0.0/0``) are refused: that is an open relay.
``relay list [--all] [--json]``
    active entries (status ``permanent`` or ``temporary``); ``--all`` also shows expired
    ones (status ``expired``). ``expires`` and ``created`` are ISO 8601 UTC
    (``2026-12-04T19:15:00Z``), in JSON too.
``relay remove NETWORK``     delete an entry (given in any form that normalises to it).
``relay purge``              delete all expired entries.

The policy daemon reads the same table (``store.relay.active_networks``). Errors: an
invalid network or duration, an entry that exists already or does not exist.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.core import relaynet
from mailwarden.errors import UsageError
from mailwarden.store import relay
from mailwarden.units import format_iso, parse_duration

MAX_NOTE = 255


def register(sub: Subparsers) -> None:
    verbs = command(sub, "relay", "networks allowed to relay without authentication")
    v = verbs.add_parser("add", help="allow a network to relay")
    v.add_argument("network", metavar="NETWORK", help="address, CIDR or wildcard (10.1.*.*)")
    v.add_argument("--expires", metavar="DURATION", help="remove after this long (e.g. 30m, 1d)")
    v.add_argument("--note", metavar="TEXT", default="", help="free text for people")
    add_json(v)
    v.set_defaults(handler=cmd_add)
    v = verbs.add_parser("list", help="list relay networks")
    v.add_argument("--all", action="store_true", help="include expired entries")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("remove", help="remove a relay network")
    v.add_argument("network", metavar="NETWORK")
    add_json(v)
    v.set_defaults(handler=cmd_remove)
    v = verbs.add_parser("purge", help="delete expired entries")
    add_json(v)
    v.set_defaults(handler=cmd_purge)


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    parsed = relaynet.parse_network(args.network)
    note = _check_note(args.note)
    now = int(time.time())
    expires_at = None
    if args.expires is not None:
        seconds = parse_duration(args.expires)
        if seconds <= 0:
            raise UsageError(f"invalid duration {args.expires!r}: must be longer than 0")
        expires_at = now + seconds
    with ctx.db().transaction() as tx:
        relay.add(tx, parsed.text, now=now, expires_at=expires_at, note=note)
    notes = []
    if parsed.adjusted:
        notes.append(f"{args.network.strip()} has host bits set; stored as {parsed.text}")
    until = f" until {format_iso(expires_at)}" if expires_at is not None else ""
    ctx.done(
        f"relay network {parsed.text} added{until}",
        network=parsed.text,
        expires=format_iso(expires_at),
        notes=notes,
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    now = int(time.time())
    with ctx.db().read() as tx:
        entries = relay.list_networks(tx, now, include_expired=args.all)
    rows = [_row(e, now) for e in entries]
    ctx.table(rows, ["network", "status", "expires", "note"])
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    network = _lookup_form(args.network)
    with ctx.db().transaction() as tx:
        relay.remove(tx, network)
    ctx.done(f"relay network {network} removed", network=network)
    return 0


def cmd_purge(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.db().transaction() as tx:
        count = relay.purge(tx, int(time.time()))
    ctx.done(f"purged {count} expired relay network{'s' if count != 1 else ''}", purged=count)
    return 0


def _row(entry: relay.RelayNetwork, now: int) -> dict[str, Any]:
    if entry.expires_at is None:
        status = "permanent"
    elif entry.expired(now):
        status = "expired"
    else:
        status = "temporary"
    return {
        "network": entry.network,
        "status": status,
        "expires": format_iso(entry.expires_at),
        "expired": entry.expired(now),
        "note": entry.note,
        "created": format_iso(entry.created_at),
    }


def _lookup_form(text: str) -> str:
    """The stored form of NETWORK; a damaged stored value can still be named exactly."""
    try:
        return relaynet.parse_network(text).text
    except UsageError:
        return text.strip()


def _check_note(note: str) -> str:
    if len(note) > MAX_NOTE:
        raise UsageError(f"--note is longer than {MAX_NOTE} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in note):
        raise UsageError("--note may not contain control characters (newlines, tabs ...)")
    return note
