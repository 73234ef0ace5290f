"""``mailwarden sendas grant|list|revoke``: let a login send as other addresses.

``sendas grant LOGIN ADDRESS``    LOGIN is an existing mailbox; ADDRESS is an address or
                                  ``@domain`` (every address of that domain).
``sendas list [LOGIN] [--json]``  the grants of one login, or of all.
``sendas revoke LOGIN ADDRESS``   remove a grant.

A login may always send as itself, its aliases and its address in alias domains without a
grant; Postfix checks this through ``smtpd_sender_login_maps`` (view
``postfix_sender_login``) and the policy daemon through ``store.sendas``.
Errors: unknown mailbox, invalid address, a grant that exists already or does not exist.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.ops import sendas as ops


def register(sub: Subparsers) -> None:
    verbs = command(sub, "sendas", "addresses a login may send as")
    v = verbs.add_parser("grant", help="let LOGIN send as ADDRESS (or @domain)")
    v.add_argument("login", metavar="LOGIN")
    v.add_argument("address", metavar="ADDRESS")
    add_json(v)
    v.set_defaults(handler=cmd_grant)
    v = verbs.add_parser("list", help="list send-as grants")
    v.add_argument("login", metavar="LOGIN", nargs="?")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("revoke", help="remove a send-as grant")
    v.add_argument("login", metavar="LOGIN")
    v.add_argument("address", metavar="ADDRESS")
    add_json(v)
    v.set_defaults(handler=cmd_revoke)


def cmd_grant(ctx: Context, args: argparse.Namespace) -> int:
    grant = ops.grant(ctx.ops, ctx.actor, args.login, args.address)
    login, address = grant["login"], grant["address"]
    ctx.done(f"{login} may now send as {address}", login=login, address=address)
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.list_grants(ctx.ops, ctx.actor, args.login)
    ctx.table(rows, ["login", "address"])
    return 0


def cmd_revoke(ctx: Context, args: argparse.Namespace) -> int:
    grant = ops.revoke(ctx.ops, ctx.actor, args.login, args.address)
    login, address = grant["login"], grant["address"]
    ctx.done(f"{login} may no longer send as {address}", login=login, address=address)
    return 0
