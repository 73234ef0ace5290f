"""``mailwarden relay add|list|remove|purge``: clients that may relay without SMTP AUTH.

``relay add NETWORK [--expires DURATION] [--note TEXT]``
    NETWORK is an IPv4/IPv6 address, a CIDR network (host bits set are cleared, and the
    command says so) or a Sambar-style wildcard such as ``140.175.165.*`` or ``10.*.*.*``.
    ``--expires 2h`` makes a temporary entry (POP-before-SMTP style). Entries covering
    every address (``0.0.0.0/0``) are refused: that is an open relay.
``relay list [--all] [--json]``
    active entries (status ``permanent`` or ``temporary``, source ``admin`` or
    ``pop-before-smtp``); ``--all`` also shows expired
    ones (status ``expired``). ``expires`` and ``created`` are ISO 8601 UTC
    (``2026-12-04T19:15:00Z``), in JSON too.
``relay remove NETWORK``     delete an entry (given in any form that normalises to it).
``relay purge``              delete all expired entries.
``relay allow-login IP [--minutes N]``
    POP-before-SMTP (docs/pop-before-smtp.md): Dovecot's post-login script
    (contrib/dovecot/mailwarden-postlogin.sh) calls it after each POP3/IMAP login. The
    address may relay for N minutes (default ``[relay] pop_before_smtp_minutes``; when
    that is 0 and no ``--minutes`` is given, nothing is recorded). The entry shows in
    ``relay list`` with source ``pop-before-smtp``; a later login extends it; an entry
    the admin made for the address is left alone; expired login entries are deleted.

The policy daemon reads the same table (``store.relay.active_networks``). Errors: an
invalid network or duration, an entry that exists already or does not exist.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.ops import relay as ops
from mailwarden.units import parse_duration


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
    v = verbs.add_parser("allow-login", help="POP-before-SMTP: let a client relay after a login")
    v.add_argument("client", metavar="IP", help="the client address Dovecot saw (its %%{rip})")
    v.add_argument(
        "--minutes",
        type=int,
        metavar="N",
        help="how long (default: [relay] pop_before_smtp_minutes; 0 there = off)",
    )
    add_json(v)
    v.set_defaults(handler=cmd_allow_login)


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    expires_in = None if args.expires is None else parse_duration(args.expires)
    added = ops.add(ctx.ops, ctx.actor, args.network, expires_in=expires_in, note=args.note)
    entry = added.record
    until = f" until {entry['expires']}" if entry["expires"] is not None else ""
    ctx.done(
        f"relay network {entry['network']} added{until}",
        network=entry["network"],
        expires=entry["expires"],
        notes=added.notes,
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.list_all(ctx.ops, ctx.actor, include_expired=args.all)
    ctx.table(rows, ["network", "status", "expires", "source", "note"])
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    network = ops.remove(ctx.ops, ctx.actor, args.network)
    ctx.done(f"relay network {network} removed", network=network)
    return 0


def cmd_purge(ctx: Context, args: argparse.Namespace) -> int:
    count = ops.purge(ctx.ops, ctx.actor)
    ctx.done(f"purged {count} expired relay network{'s' if count != 1 else ''}", purged=count)
    return 0


def cmd_allow_login(ctx: Context, args: argparse.Namespace) -> int:
    minutes = args.minutes
    if minutes is None:
        minutes = ctx.settings.relay.pop_before_smtp_minutes
        if minutes == 0:
            ctx.done(
                "POP-before-SMTP is off ([relay] pop_before_smtp_minutes = 0): nothing recorded",
                result="off",
            )
            return 0
    entry = ops.allow_login(ctx.ops, ctx.actor, args.client, minutes)
    until = f"until {entry['expires']}" if entry["expires"] else "(a permanent entry)"
    ctx.done(
        f"relay network {entry['network']} may relay {until} ({entry['result']})",
        network=entry["network"],
        expires=entry["expires"],
        result=entry["result"],
    )
    return 0
