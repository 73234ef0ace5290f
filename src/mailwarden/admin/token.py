"""``mailwarden token create|list|show|revoke``: bearer tokens of the REST API.

``create NAME --role admin|domain-admin|readonly [--domain D]... [--expires DURATION]``
prints the token once (``token: mw_...``; with ``--json`` in ``token``); only its
SHA-256 is stored, so a lost token cannot be shown again: revoke it and create another.
A domain-admin token sees only the ``--domain`` domains; readonly reads everything.
``list`` and ``show`` print name, role, domains, state (active, expired, revoked) and
times (ISO 8601 UTC), never the token. ``revoke NAME`` stops a token at once.

Errors (one line, exit 1): invalid name, unknown role, a domain-admin token without
``--domain`` (or ``--domain`` on another role), unknown domain, bad duration, a name that
exists already, unknown token.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.ops import tokens as ops
from mailwarden.units import parse_duration


def register(sub: Subparsers) -> None:
    verbs = command(sub, "token", "REST API tokens: create, list, revoke")
    v = verbs.add_parser("create", help="create a token and print it once")
    v.add_argument("name", metavar="NAME")
    v.add_argument("--role", required=True, choices=("admin", "domain-admin", "readonly"))
    v.add_argument("--domain", metavar="D", action="append", default=[], help="repeatable")
    v.add_argument("--expires", metavar="DURATION", help="e.g. 90d; default: never")
    add_json(v)
    v.set_defaults(handler=cmd_create)
    v = verbs.add_parser("list", help="list tokens (never their secrets)")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("show", help="show one token")
    v.add_argument("name", metavar="NAME")
    add_json(v)
    v.set_defaults(handler=cmd_show)
    v = verbs.add_parser("revoke", help="revoke a token at once")
    v.add_argument("name", metavar="NAME")
    add_json(v)
    v.set_defaults(handler=cmd_revoke)


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    expires_in = None if args.expires is None else parse_duration(args.expires)
    created = ops.create(
        ctx.ops,
        ctx.actor,
        args.name,
        role=args.role,
        domain_names=args.domain,
        expires_in=expires_in,
    )
    rec = created.record
    scope = f" for {', '.join(rec['domains'])}" if rec["domains"] else ""
    until = f" until {rec['expires']}" if rec["expires"] else ""
    ctx.done(
        f"created {rec['role']} token {rec['name']}{scope}{until}; it is shown only now",
        name=rec["name"],
        role=rec["role"],
        domains=rec["domains"],
        expires=rec["expires"],
        token=created.token,
    )
    ctx.say(f"token: {created.token}")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.list_all(ctx.ops, ctx.actor)
    ctx.table(rows, ["name", "role", "domains", "state", "expires", "last_used"])
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ops.show(ctx.ops, ctx.actor, args.name))
    return 0


def cmd_revoke(ctx: Context, args: argparse.Namespace) -> int:
    rec = ops.revoke(ctx.ops, ctx.actor, args.name)
    ctx.done(f"token {rec['name']} revoked", name=rec["name"])
    return 0
