"""``mailwarden domain add|list|show|set|remove``: the mail domains this server handles.

``add NAME`` creates a local domain (mailboxes live here); ``--alias-of DOMAIN`` an alias
domain whose every address maps to the same local part of DOMAIN (a local domain);
``--relay [--transport T]`` a relay domain (backup MX) passed on with Postfix transport T,
or Postfix's ``relay_transport`` when none is given. Limits: ``--max-mailboxes N``,
``--max-aliases N`` (distinct alias sources), ``--default-quota SIZE`` (for new
mailboxes), ``--max-message-size SIZE``; 0 means unlimited, sizes like ``500M`` or ``2G``.

``list`` shows every domain with its mailbox and alias counts; ``show NAME`` one domain;
``set NAME`` changes limits, the transport of a relay domain, or ``--active yes|no``.
``remove NAME`` refuses while the domain has mailboxes, aliases or alias domains unless
``--force``, which deletes those rows too. Maildirs are never deleted: the command says
where they are so the operator can archive or remove them.

Every verb takes ``--json``; ``show`` prints ``created_at`` as ISO 8601 UTC.

Errors (one line, exit 1): invalid domain name; unknown domain; a domain that exists
already; ``--alias-of`` naming an alias or relay domain; a limit on a domain kind it does
not apply to; a ``--max-mailboxes``/``--max-aliases`` below what the domain already holds
(0, unlimited, always passes); bad size or count.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from mailwarden import address, units
from mailwarden.admin.args import Subparsers, command, option_value
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.store import domains

_TRANSPORT = re.compile(r"^[A-Za-z0-9_.-]*:[\x21-\x7e]*$")
# The limits ``add`` and ``set`` accept: (column, option, kind of value).
_LIMITS = (
    ("max_mailboxes", "--max-mailboxes", "count"),
    ("max_aliases", "--max-aliases", "count"),
    ("default_quota_bytes", "--default-quota", "size"),
    ("max_message_bytes", "--max-message-size", "size"),
)
_LOCAL_ONLY = ("max_mailboxes", "max_aliases", "default_quota_bytes")


# --- commands ---------------------------------------------------------------------------


def register(sub: Subparsers) -> None:
    verbs = command(sub, "domain", "mail domains: local, alias and relay")
    v = verbs.add_parser("add", help="add a local, alias or relay domain")
    v.add_argument("name", metavar="NAME")
    v.add_argument("--alias-of", metavar="DOMAIN", help="make NAME an alias of local DOMAIN")
    v.add_argument("--relay", action="store_true", help="relay domain (backup MX)")
    _add_limits(v)
    add_json(v)
    v.set_defaults(handler=cmd_add)
    v = verbs.add_parser("list", help="list domains with mailbox and alias counts")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("show", help="show one domain")
    v.add_argument("name", metavar="NAME")
    add_json(v)
    v.set_defaults(handler=cmd_show)
    v = verbs.add_parser("set", help="change a domain's limits, transport or state")
    v.add_argument("name", metavar="NAME")
    _add_limits(v)
    v.add_argument("--active", metavar="yes|no", help="switch the domain on or off")
    add_json(v)
    v.set_defaults(handler=cmd_set)
    v = verbs.add_parser("remove", help="remove a domain (Maildirs stay on disk)")
    v.add_argument("name", metavar="NAME")
    v.add_argument("--force", action="store_true", help="also remove its mailboxes and aliases")
    add_json(v)
    v.set_defaults(handler=cmd_remove)


def _add_limits(v: argparse.ArgumentParser) -> None:
    v.add_argument("--transport", metavar="T", help="Postfix transport of a relay domain")
    v.add_argument("--max-mailboxes", metavar="N", help="0 = unlimited")
    v.add_argument("--max-aliases", metavar="N", help="distinct alias sources; 0 = unlimited")
    v.add_argument("--default-quota", metavar="SIZE", help="quota of new mailboxes, e.g. 1G")
    v.add_argument("--max-message-size", metavar="SIZE", help="e.g. 50M; 0 = unlimited")


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    """The limit and transport options given, as column -> value."""
    values: dict[str, Any] = {}
    for column, option, kind in _LIMITS:
        text = getattr(args, option[2:].replace("-", "_"))
        if text is not None:
            if kind == "count":
                values[column] = units.parse_count(text, option)
            else:
                values[column] = option_value(units.parse_size, text, option)
    if args.transport is not None:
        values["transport"] = _transport(args.transport)
    return values


def _transport(text: str) -> str | None:
    """A Postfix ``transport:nexthop``; empty text clears it."""
    value = text.strip()
    if not value:
        return None
    if len(value) > 255 or not _TRANSPORT.match(value):
        raise UsageError(
            f"invalid transport {text!r}: expected transport:nexthop "
            "(e.g. smtp:[mx.example.net]:25)"
        )
    return value


def _check_kind(kind: str, values: dict[str, Any]) -> None:
    if kind != "local":
        given = [
            option for column, option, _ in _LIMITS if column in _LOCAL_ONLY and column in values
        ]
        if given:
            raise UsageError(
                f"{given[0]} applies to local domains only, not to {_a(kind)} {kind} domain"
            )
    if kind != "relay" and values.get("transport"):
        raise UsageError(
            f"--transport applies to relay domains only, not to {_a(kind)} {kind} domain"
        )


def _a(word: str) -> str:
    """The indefinite article of ``word`` ("an alias domain", "a relay domain")."""
    return "an" if word[:1] in "aeiou" else "a"


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    name = address.normalize_domain(args.name)
    if args.alias_of and args.relay:
        raise UsageError("--alias-of and --relay exclude each other")
    kind = "alias" if args.alias_of else "relay" if args.relay else "local"
    values = _limits(args)
    _check_kind(kind, values)
    target = address.normalize_domain(args.alias_of) if args.alias_of else None
    transport = values.pop("transport", None)
    with ctx.db().transaction() as tx:
        alias_of = domains.require(tx, target) if target else None
        domain = domains.add(
            tx, name, kind=kind, alias_of=alias_of, transport=transport, limits=values
        )
    detail = f" -> {domain.alias_of}" if domain.alias_of else ""
    ctx.done(
        f"added {kind} domain {domain.name}{detail}",
        domain=domain.name,
        kind=kind,
        alias_of=domain.alias_of,
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.db().read() as tx:
        rows = domains.list_all(tx)
    if not ctx.json:
        for row in rows:
            row["target"] = row["alias_of"] or row["transport"]
    ctx.table(rows, ["name", "kind", "target", "mailboxes", "aliases", "active"])
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    name = address.normalize_domain(args.name)
    with ctx.db().read() as tx:
        domain = domains.require(tx, name)
        used = domains.usage(tx, domain.id)
    record: dict[str, Any] = {
        "name": domain.name,
        "kind": domain.kind,
        "alias_of": domain.alias_of,
        "transport": domain.transport,
        "active": domain.active,
        "max_mailboxes": domain.max_mailboxes,
        "max_aliases": domain.max_aliases,
        "default_quota_bytes": domain.default_quota_bytes,
        "max_message_bytes": domain.max_message_bytes,
        "mailboxes": used.mailboxes,
        "aliases": used.aliases,
        "alias_domains": list(used.alias_domains),
        "created_at": units.format_iso(domain.created_at),
    }
    if not ctx.json:
        record = _humanise(record)
    ctx.show(record)
    return 0


def _humanise(record: dict[str, Any]) -> dict[str, Any]:
    """The same record for people: sizes as ``1G``, 0 as ``unlimited``."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key.endswith("_bytes"):
            label = key.removesuffix("_bytes").replace("message", "message_size")
            out[label] = units.format_size_limit(value)
        elif key in ("max_mailboxes", "max_aliases"):
            out[key] = units.format_count_limit(value)
        else:
            out[key] = value
    return out


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    name = address.normalize_domain(args.name)
    values = _limits(args)
    if args.active is not None:
        values["active"] = int(units.parse_yes_no(args.active, "--active"))
    if not values:
        raise UsageError("nothing to change: give at least one option (see --help)")
    with ctx.db().transaction() as tx:
        domain = domains.require(tx, name)
        _check_kind(domain.kind, values)
        domains.update(tx, domain.id, values)
    ctx.done(f"updated domain {name}", domain=name, changed=sorted(values))
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    name = address.normalize_domain(args.name)
    with ctx.db().transaction() as tx:
        domain = domains.require(tx, name)
        used = domains.usage(tx, domain.id)
        if not used.empty and not args.force:
            raise UsageError(
                f"domain {name} still has {_describe(used)}; use --force to remove them too"
            )
        domains.remove(tx, domain.id)
    notes = []
    if used.mailboxes:
        notes.append(
            f"Maildirs were not deleted: they stay below {ctx.settings.mail.root} "
            "(archive or remove them yourself)"
        )
    ctx.done(
        f"removed domain {name}" + (f" with {_describe(used)}" if not used.empty else ""),
        domain=name,
        mailboxes=used.mailboxes,
        aliases=used.aliases,
        alias_domains=list(used.alias_domains),
        notes=notes,
    )
    return 0


def _describe(used: domains.Usage) -> str:
    parts = []
    if used.mailboxes:
        parts.append(f"{used.mailboxes} mailbox" + ("es" if used.mailboxes != 1 else ""))
    if used.aliases:
        parts.append(f"{used.aliases} alias" + ("es" if used.aliases != 1 else ""))
    if used.alias_domains:
        parts.append("alias domain " + ", ".join(used.alias_domains))
    return ", ".join(parts)
