"""``mailwarden user add|list|show|set|passwd|remove``: mailboxes.

``add ADDRESS`` creates a mailbox in a local domain. Its Maildir path (relative to
``mail.root``) follows ``mail.layout``; its quota defaults to the domain's default quota.
The password is read from the first line of stdin with ``--password-stdin``; without it a
random one is generated and printed once (``password: ...``). It is stored hashed with
``mail.password_scheme`` or ``--scheme sha512-crypt|argon2id``. ``--services`` takes
``mail,calendar,contacts`` (or ``all``; default ``[api] provision``, 7 = all); ``--group``
a mail group; ``--inactive`` creates the mailbox switched off.

``list [--domain D]`` and ``show ADDRESS`` never print the password hash; ``show`` adds
quota usage (as last recorded by the LDA), forwards, the aliases that point here, and
``receives_mail``: a mailbox whose services exclude ``mail`` has no IMAP/POP3 login, so
mail that would be stored in it is refused (5.2.1, ``core.recipient``); ``add`` and
``set`` add a note when that is the case. Times are ISO 8601 UTC. Every verb takes
``--json`` (a generated password is in its ``password``).
``set`` changes quota, name, group, services or ``--active yes|no``; ``passwd`` sets a
new password the same way ``add`` does. ``remove`` deletes the row with its forwards and
settings; the Maildir stays on disk (the command says where), and aliases that still
deliver to the address are listed as a warning on stderr. ``first-login ADDRESS [--ip
IP]`` is run by Dovecot's post-login script after each IMAP/POP3 login: the first one
is recorded (``provisioned_at``, ``last_login``) and printed as one line (seed 002's
``checkUserProvisioning``); later ones do nothing (``ops.logins.first_login``).

Errors (one line, exit 1): invalid address; unknown or non-local domain (for an alias
domain the message names the domain to use); duplicate mailbox; an alias with the same
address; the domain's mailbox limit; unknown group or service; bad size or count; empty
password on stdin.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailwarden import passwords, units
from mailwarden.admin.args import Subparsers, command, option_value
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.ops import mailboxes as ops


def register(sub: Subparsers) -> None:
    verbs = command(sub, "user", "mailboxes: add, change, remove")
    v = verbs.add_parser("add", help="add a mailbox")
    v.add_argument("address", metavar="ADDRESS")
    _password_options(v)
    _settings_options(v)
    v.add_argument("--inactive", action="store_true", help="create it switched off")
    add_json(v)
    v.set_defaults(handler=cmd_add)
    v = verbs.add_parser("list", help="list mailboxes")
    v.add_argument("--domain", metavar="D", help="only this domain")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("show", help="show one mailbox")
    v.add_argument("address", metavar="ADDRESS")
    add_json(v)
    v.set_defaults(handler=cmd_show)
    v = verbs.add_parser("set", help="change a mailbox")
    v.add_argument("address", metavar="ADDRESS")
    _settings_options(v)
    v.add_argument("--active", metavar="yes|no", help="switch the mailbox on or off")
    add_json(v)
    v.set_defaults(handler=cmd_set)
    v = verbs.add_parser("passwd", help="set a new password")
    v.add_argument("address", metavar="ADDRESS")
    _password_options(v)
    add_json(v)
    v.set_defaults(handler=cmd_passwd)
    v = verbs.add_parser("remove", help="remove a mailbox (its Maildir stays on disk)")
    v.add_argument("address", metavar="ADDRESS")
    add_json(v)
    v.set_defaults(handler=cmd_remove)
    v = verbs.add_parser(
        "first-login", help="provision at the first login (Dovecot's post-login script)"
    )
    v.add_argument("address", metavar="ADDRESS")
    v.add_argument("--ip", default="-", help="the client's address (for the log line)")
    add_json(v)
    v.set_defaults(handler=cmd_first_login)


def _password_options(v: argparse.ArgumentParser) -> None:
    v.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin (else one is generated and printed)",
    )
    v.add_argument("--scheme", metavar="S", help="sha512-crypt or argon2id")


def _settings_options(v: argparse.ArgumentParser) -> None:
    v.add_argument("--quota", metavar="SIZE", help="e.g. 2G; 0 = unlimited")
    v.add_argument("--quota-messages", metavar="N", help="0 = unlimited")
    v.add_argument("--name", metavar="TEXT", help="the person's name")
    v.add_argument("--group", metavar="G", help="mail group (default: default)")
    v.add_argument("--services", metavar="LIST", help="mail,calendar,contacts or all")


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """Columns from the options given (checked and the group resolved by ``ops``)."""
    values: dict[str, Any] = {}
    if args.quota is not None:
        values["quota_bytes"] = option_value(units.parse_size, args.quota, "--quota")
    if args.quota_messages is not None:
        values["quota_messages"] = units.parse_count(args.quota_messages, "--quota-messages")
    if args.name is not None:
        values["name"] = args.name
    if args.services is not None:
        values["services"] = args.services
    return values


def _password(args: argparse.Namespace) -> str | None:
    """The password from stdin with ``--password-stdin``; None: ``ops`` generates one."""
    if args.password_stdin:
        return passwords.read_password_stdin(sys.stdin)
    return None


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    added = ops.add(
        ctx.ops,
        ctx.actor,
        args.address,
        password=_password(args),
        scheme=args.scheme,
        settings=_changes(args),
        group=args.group,
        active=not args.inactive,
    )
    box = added.record
    state = "" if box["active"] else " (inactive)"
    ctx.done(
        f"added mailbox {box['address']}{state}, Maildir {box['maildir']}/",
        address=box["address"],
        maildir=f"{box['maildir']}/",
        password=added.password,
        notes=added.notes,
    )
    if added.password:
        ctx.say(f"password: {added.password}")  # people; --json has it in "password"
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.list_all(ctx.ops, ctx.actor, args.domain)
    for row in rows:
        del row["domain"]
        row["last_login"] = units.format_utc(row["last_login"])
        if not ctx.json:
            row["quota"] = units.format_size_limit(row["quota_bytes"])
    ctx.table(rows, ["address", "name", "quota", "group", "services", "active", "last_login"])
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    record = ops.show(ctx.ops, ctx.actor, args.address)
    if not ctx.json:
        record = _humanise(record)
    ctx.show(record)
    return 0


def _humanise(record: dict[str, Any]) -> dict[str, Any]:
    """The same record for people: sizes as ``1G``, 0 as ``unlimited``."""
    out = dict(record)
    out["quota_bytes"] = units.format_size_limit(record["quota_bytes"])
    out["quota_messages"] = record["quota_messages"] or "unlimited"
    if record["used_bytes"] is not None:
        out["used_bytes"] = units.format_size(record["used_bytes"])
    return {key.removesuffix("_bytes"): value for key, value in out.items()}


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    values = _changes(args)
    if args.active is not None:
        values["active"] = int(units.parse_yes_no(args.active, "--active"))
    record, changed, notes = ops.update(ctx.ops, ctx.actor, args.address, values, group=args.group)
    addr = record["address"]
    ctx.done(f"updated mailbox {addr}", address=addr, changed=changed, notes=notes)
    return 0


def cmd_passwd(ctx: Context, args: argparse.Namespace) -> int:
    addr = ops.parse(ctx.ops, args.address)
    generated = ops.set_password(
        ctx.ops, ctx.actor, addr, password=_password(args), scheme=args.scheme
    )
    ctx.done(f"password of {addr} changed", address=addr, password=generated)
    if generated:
        ctx.say(f"password: {generated}")
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    removed = ops.remove(ctx.ops, ctx.actor, args.address)
    addr, path = removed.record["address"], removed.record["maildir"]
    pointing = removed.still_sending_here
    if pointing:
        print(
            f"mailwarden: warning: these still send mail to {addr}: {', '.join(pointing)}",
            file=sys.stderr,
        )
    ctx.done(
        f"removed mailbox {addr}; its Maildir {path} was left on disk",
        address=addr,
        maildir=str(path),
        still_sending_here=pointing,
    )
    return 0


def cmd_first_login(ctx: Context, args: argparse.Namespace) -> int:
    """Run by contrib/dovecot/mailwarden-postlogin.sh after every IMAP/POP3 login: the
    first one is recorded and printed as one line; later ones print nothing."""
    from mailwarden.ops import logins

    record = logins.first_login(ctx.ops, args.address, client=args.ip)
    if ctx.json:
        ctx.show({"provisioned": record is not None, **(record or {})})
    elif record is not None:
        ctx.say(
            f"first login: OK address={record['address']} client={record['client']} "
            f"services={','.join(record['services']) or '-'} maildir={record['maildir']}"
        )
    return 0
