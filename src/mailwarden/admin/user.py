"""``mailwarden user add|list|show|set|passwd|remove``: mailboxes.

``add ADDRESS`` creates a mailbox in a local domain. Its Maildir path (relative to
``mail.root``) follows ``mail.layout``; its quota defaults to the domain's default quota.
The password is read from the first line of stdin with ``--password-stdin``; without it a
random one is generated and printed once (``password: ...``). It is stored hashed with
``mail.password_scheme`` or ``--scheme sha512-crypt|argon2id``. ``--services`` takes
``mail,calendar,contacts`` (or ``all``); ``--group`` a mail group; ``--inactive`` creates
the mailbox switched off.

``list [--domain D]`` and ``show ADDRESS`` never print the password hash; ``show`` adds
quota usage (as last recorded by the LDA), forwards, the aliases that point here, and
``receives_mail``: a mailbox whose services exclude ``mail`` has no IMAP/POP3 login, so
mail that would be stored in it is refused (5.2.1, ``core.recipient``); ``add`` and
``set`` add a note when that is the case. Times are ISO 8601 UTC. Every verb takes
``--json`` (a generated password is in its ``password``).
``set`` changes quota, name, group, services or ``--active yes|no``; ``passwd`` sets a
new password the same way ``add`` does. ``remove`` deletes the row with its forwards and
settings; the Maildir stays on disk (the command says where), and aliases that still
deliver to the address are listed as a warning on stderr.

Errors (one line, exit 1): invalid address; unknown or non-local domain (for an alias
domain the message names the domain to use); duplicate mailbox; an alias with the same
address; the domain's mailbox limit; unknown group or service; bad size or count; empty
password on stdin.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any

from mailwarden import address, passwords, units
from mailwarden.admin.args import Subparsers, command, option_value
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.core import recipient
from mailwarden.errors import UsageError
from mailwarden.store import aliases, domains, forwards, groups, mailboxes
from mailwarden.store.db import Tx

_MAX_NAME = 255


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
    """Columns from the options given (the group is resolved in the transaction)."""
    values: dict[str, Any] = {}
    if args.quota is not None:
        values["quota_bytes"] = option_value(units.parse_size, args.quota, "--quota")
    if args.quota_messages is not None:
        values["quota_messages"] = units.parse_count(args.quota_messages, "--quota-messages")
    if args.name is not None:
        values["name"] = _check_name(args.name)
    if args.services is not None:
        values["services"] = mailboxes.parse_services(args.services)
    return values


def _check_name(text: str) -> str:
    if len(text) > _MAX_NAME or any(ch < " " or ch == "\x7f" for ch in text):
        raise UsageError(f"invalid --name: at most {_MAX_NAME} characters, no control characters")
    return text


def _password_hash(ctx: Context, args: argparse.Namespace) -> tuple[str, str | None]:
    """(hash, the generated password or None when it came from stdin)."""
    scheme = args.scheme or ctx.settings.mail.password_scheme
    if scheme not in passwords.SCHEMES:
        raise UsageError(f"unknown password scheme {scheme!r}: use {', '.join(passwords.SCHEMES)}")
    if args.password_stdin:
        return passwords.hash_password(passwords.read_password_stdin(sys.stdin), scheme), None
    generated = secrets.token_urlsafe(12)
    return passwords.hash_password(generated, scheme), generated


def _address(ctx: Context, text: str) -> str:
    return str(address.parse_address(text, delimiter=ctx.settings.mail.recipient_delimiter))


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    mail = ctx.settings.mail
    addr = address.parse_mailbox_address(args.address, delimiter=mail.recipient_delimiter)
    values = _changes(args)
    maildir = address.maildir_relpath(addr, mail.layout)
    pw_hash, generated = _password_hash(ctx, args)
    with ctx.db().transaction() as tx:
        domain = domains.require_local(tx, addr.domain, "user")
        group = groups.require(tx, groups.normalize_name(args.group or groups.DEFAULT))
        new = mailboxes.NewMailbox(
            local_part=addr.local,
            password_hash=pw_hash,
            maildir=maildir,
            name=values.get("name", ""),
            quota_bytes=values.get("quota_bytes", domain.default_quota_bytes),
            quota_messages=values.get("quota_messages", 0),
            group_id=group.id,
            services=values.get("services", mailboxes.ALL_SERVICES),
            active=not args.inactive,
        )
        box = mailboxes.add(tx, domain, new)
    state = "" if box.active else " (inactive)"
    path = address.maildir_path(mail.root, box.maildir)
    ctx.done(
        f"added mailbox {box.address}{state}, Maildir {path}/",
        address=box.address,
        maildir=f"{path}/",
        password=generated,
        notes=_mail_notes(box.services, keep_copy=False, forwards=[]),
    )
    if generated:
        ctx.say(f"password: {generated}")  # people; --json has it in "password"
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    name = address.normalize_domain(args.domain) if args.domain else None
    with ctx.db().read() as tx:
        domain_id = domains.filter_id(tx, name)
        rows = mailboxes.list_all(tx, domain_id)
    for row in rows:
        row["last_login"] = units.format_utc(row["last_login"])
        if not ctx.json:
            row["quota"] = units.format_size_limit(row["quota_bytes"])
    ctx.table(rows, ["address", "name", "quota", "group", "services", "active", "last_login"])
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    addr = _address(ctx, args.address)
    with ctx.db().read() as tx:
        record = _record(ctx, tx, mailboxes.require(tx, addr))
    if not ctx.json:
        record = _humanise(record)
    ctx.show(record)
    return 0


def _record(ctx: Context, tx: Tx, box: mailboxes.Mailbox) -> dict[str, Any]:
    used = mailboxes.usage(tx, box.id)
    targets = forwards.destinations(tx, box.id)
    return {
        "address": box.address,
        "name": box.name,
        "active": box.active,
        "maildir": address.maildir_path(ctx.settings.mail.root, box.maildir),
        "quota_bytes": box.quota_bytes,
        "quota_messages": box.quota_messages,
        "used_bytes": used.bytes if used else None,
        "used_messages": used.messages if used else None,
        "group": box.group,
        "services": mailboxes.service_names(box.services),
        "receives_mail": _receives(box.services, box.forward_keep_copy, targets),
        "forwards": targets,
        "keep_copy": box.forward_keep_copy,
        "aliases": aliases.sources_to(tx, box.address),
        "last_login": units.format_utc(box.last_login),
        "created_at": units.format_iso(box.created_at),
    }


def _receives(services: int, keep_copy: bool, targets: list[str]) -> str:
    """``yes``, ``forwarded only`` or why not: what ``core.recipient`` decides at RCPT."""
    stored = recipient.mailbox_stores(bool(targets), keep_copy)
    if not stored:
        return "forwarded only"
    if recipient.has_mail_service(services):
        return "yes"
    return f"no: services exclude mail, so it is refused ({recipient.NO_MAIL.dsn})"


def _mail_notes(services: int, *, keep_copy: bool, forwards: list[str]) -> list[str]:
    """A note when the mailbox would keep mail nobody can read (it is refused instead)."""
    answer = _receives(services, keep_copy, forwards)
    return [f"receives mail: {answer}"] if answer.startswith("no") else []


def _humanise(record: dict[str, Any]) -> dict[str, Any]:
    """The same record for people: sizes as ``1G``, 0 as ``unlimited``."""
    out = dict(record)
    out["quota_bytes"] = units.format_size_limit(record["quota_bytes"])
    out["quota_messages"] = record["quota_messages"] or "unlimited"
    if record["used_bytes"] is not None:
        out["used_bytes"] = units.format_size(record["used_bytes"])
    return {key.removesuffix("_bytes"): value for key, value in out.items()}


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    addr = _address(ctx, args.address)
    values = _changes(args)
    if args.active is not None:
        values["active"] = int(units.parse_yes_no(args.active, "--active"))
    if not values and args.group is None:
        raise UsageError("nothing to change: give at least one option (see --help)")
    with ctx.db().transaction() as tx:
        box = mailboxes.require(tx, addr)
        if args.group is not None:
            values["group_id"] = groups.require(tx, groups.normalize_name(args.group)).id
        mailboxes.update(tx, box.id, values)
        notes = _mail_notes(
            values.get("services", box.services),
            keep_copy=box.forward_keep_copy,
            forwards=forwards.destinations(tx, box.id),
        )
    ctx.done(f"updated mailbox {addr}", address=addr, changed=sorted(values), notes=notes)
    return 0


def cmd_passwd(ctx: Context, args: argparse.Namespace) -> int:
    addr = _address(ctx, args.address)
    pw_hash, generated = _password_hash(ctx, args)
    with ctx.db().transaction() as tx:
        mailboxes.set_password(tx, mailboxes.require(tx, addr).id, pw_hash)
    ctx.done(f"password of {addr} changed", address=addr, password=generated)
    if generated:
        ctx.say(f"password: {generated}")
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    addr = _address(ctx, args.address)
    with ctx.db().transaction() as tx:
        box = mailboxes.require(tx, addr)
        pointing = aliases.sources_to(tx, addr) + forwards.forwarders_to(tx, addr)
        mailboxes.remove(tx, box.id)
    path = address.maildir_path(ctx.settings.mail.root, box.maildir)
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
