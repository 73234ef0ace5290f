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
from typing import Any

from mailwarden import units
from mailwarden.admin.args import Subparsers, command, option_value
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.ops import domains as ops

# The limits ``add`` and ``set`` accept: (column, option, kind of value).
_LIMITS = (
    ("max_mailboxes", "--max-mailboxes", "count"),
    ("max_aliases", "--max-aliases", "count"),
    ("default_quota_bytes", "--default-quota", "size"),
    ("max_message_bytes", "--max-message-size", "size"),
)


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
        values["transport"] = args.transport
    return values


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    if args.alias_of and args.relay:
        raise UsageError("--alias-of and --relay exclude each other")
    kind = "alias" if args.alias_of else "relay" if args.relay else "local"
    values = _limits(args)
    transport = values.pop("transport", None)
    domain = ops.add(
        ctx.ops,
        ctx.actor,
        args.name,
        kind=kind,
        alias_of=args.alias_of,
        transport=transport,
        limits=values,
    )
    detail = f" -> {domain['alias_of']}" if domain["alias_of"] else ""
    ctx.done(
        f"added {kind} domain {domain['name']}{detail}",
        domain=domain["name"],
        kind=kind,
        alias_of=domain["alias_of"],
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.list_all(ctx.ops, ctx.actor)
    if not ctx.json:
        for row in rows:
            row["target"] = row["alias_of"] or row["transport"]
    ctx.table(rows, ["name", "kind", "target", "mailboxes", "aliases", "active"])
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    record = ops.show(ctx.ops, ctx.actor, args.name)
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
    values = _limits(args)
    if args.active is not None:
        values["active"] = int(units.parse_yes_no(args.active, "--active"))
    domain = ops.update(ctx.ops, ctx.actor, args.name, values)
    ctx.done(f"updated domain {domain['name']}", domain=domain["name"], changed=sorted(values))
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    removed = ops.remove(ctx.ops, ctx.actor, args.name, force=args.force)
    used = removed.usage
    notes = []
    if used.mailboxes:
        notes.append(
            f"Maildirs were not deleted: they stay below {ctx.settings.mail.root} "
            "(archive or remove them yourself)"
        )
    ctx.done(
        f"removed domain {removed.name}"
        + (f" with {ops.describe(used)}" if not used.empty else ""),
        domain=removed.name,
        mailboxes=used.mailboxes,
        aliases=used.aliases,
        alias_domains=list(used.alias_domains),
        notes=notes,
    )
    return 0
