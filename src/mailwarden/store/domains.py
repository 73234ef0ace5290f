"""Domains: the mail domains this server is responsible for.

Kinds (DESIGN §5):
  ``local``  mailboxes and aliases live here (Postfix ``virtual_mailbox_domains``)
  ``alias``  every address ``x@alias`` maps to ``x@target``; ``target`` must be local
  ``relay``  backup MX / ``relay_domains``: mail is passed on with ``transport``
             (none = Postfix's ``relay_transport``)
Wildcards (``core.domainmatch``): a local or relay domain may be named ``*.example.test``
and then hosts every subdomain of example.test; the exact name wins, then the longest
wildcard (``covering``). Mailboxes and aliases are created under concrete names
(``user@sub.example.test``) and belong to the domain that covers them; a new domain that
would take such addresses from their wildcard is refused (``displaced``).
Limits (0 = unlimited): ``max_mailboxes``, ``max_aliases`` (distinct alias sources),
``default_quota_bytes`` (given to new mailboxes), ``max_message_bytes``.

Who calls it: ``admin/domain.py`` and the other store modules (to find the domain an
address belongs to); policyd and the LDA read domains through ``get``.

Errors: ``NotFound`` "unknown domain 'x'"; ``UsageError`` when an address needs a local
domain and the domain is an alias or relay domain (the message names the target to use);
``Conflict`` "domain x already exists".
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailwarden.core import domainmatch
from mailwarden.errors import Conflict, NotFound, UsageError
from mailwarden.store.db import Row, Tx

KINDS = ("local", "alias", "relay")

# Columns ``update`` may change; the names are constants, never caller text.
SETTABLE = (
    "max_mailboxes",
    "max_aliases",
    "default_quota_bytes",
    "max_message_bytes",
    "transport",
    "active",
)

_SELECT = (
    "SELECT d.id, d.name, d.kind, t.name AS alias_of, d.transport, d.max_mailboxes,"
    " d.max_aliases, d.default_quota_bytes, d.max_message_bytes, d.active, d.created_at"
    " FROM domains d LEFT JOIN domains t ON t.id = d.alias_of"
)


@dataclass(frozen=True, slots=True)
class Domain:
    id: int
    name: str
    kind: str
    alias_of: str | None  # the target's name, for an alias domain
    transport: str | None
    max_mailboxes: int
    max_aliases: int
    default_quota_bytes: int
    max_message_bytes: int
    active: bool
    created_at: int

    @property
    def is_local(self) -> bool:
        return self.kind == "local"


@dataclass(frozen=True, slots=True)
class Usage:
    """What still lives in a domain (what ``remove`` would take with it)."""

    mailboxes: int
    aliases: int  # distinct alias sources
    alias_domains: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.mailboxes or self.aliases or self.alias_domains)


def _domain(row: Row) -> Domain:
    return Domain(
        id=int(row["id"]),
        name=row["name"],
        kind=row["kind"],
        alias_of=row["alias_of"],
        transport=row["transport"],
        max_mailboxes=int(row["max_mailboxes"]),
        max_aliases=int(row["max_aliases"]),
        default_quota_bytes=int(row["default_quota_bytes"]),
        max_message_bytes=int(row["max_message_bytes"]),
        active=bool(row["active"]),
        created_at=int(row["created_at"]),
    )


def get(tx: Tx, name: str) -> Domain | None:
    """The domain called ``name`` (already normalised), or None."""
    row = tx.one(_SELECT + " WHERE d.name = ?", (name,))
    return None if row is None else _domain(row)


def require(tx: Tx, name: str) -> Domain:
    domain = get(tx, name)
    if domain is None:
        raise NotFound(f"unknown domain {name!r}")
    return domain


def filter_id(tx: Tx, name: str | None) -> int | None:
    """The id of an optional ``--domain`` filter (already normalised); None = all."""
    return require(tx, name).id if name else None


def covering(tx: Tx, name: str) -> Domain | None:
    """The domain that hosts the concrete name ``name``: the exact row, else the longest
    wildcard (``core.domainmatch``), switched off or not; None when nothing covers it."""
    names = domainmatch.candidates(name)
    marks = ", ".join("?" * len(names))
    rows = {r["name"]: r for r in tx.all(_SELECT + f" WHERE d.name IN ({marks})", tuple(names))}
    found = domainmatch.best(name, rows)
    return None if found is None else _domain(rows[found])


def displaced(tx: Tx, name: str) -> list[str]:
    """Addresses stored under a wildcard domain that the new domain ``name`` (already
    inserted in ``tx``) would take over; adding it must be refused while there are any."""
    pattern = "%." + domainmatch.suffix(name) if domainmatch.is_wildcard(name) else "%@" + name
    found = []
    for table, column in (("mailboxes", "address"), ("aliases", "source")):
        rows = tx.all(
            f"SELECT x.{column} AS address, x.domain_id FROM {table} x"
            f" JOIN domains d ON d.id = x.domain_id"
            f" WHERE d.name LIKE '*.%' AND x.{column} LIKE ?",
            (pattern,),
        )
        for row in rows:
            host = covering(tx, str(row["address"]).rpartition("@")[2])
            if host is None or host.id != int(row["domain_id"]):
                found.append(str(row["address"]))
    return sorted(set(found))


def require_local(tx: Tx, name: str, what: str) -> Domain:
    """The local domain that hosts ``name`` (exact, else a wildcard: ``covering``);
    ``what`` ("user", "alias") words the refusal. For a wildcard the answer carries the
    wildcard's id and settings under the concrete ``name``, so that addresses built from
    it (``local@domain.name``) are concrete."""
    domain = covering(tx, name)
    if domain is None:
        raise NotFound(f"unknown domain {name!r}")
    if domain.name != name:
        domain = dataclasses.replace(domain, name=name)
    if domain.kind == "alias":
        raise UsageError(
            f"{domain.name} is an alias domain of {domain.alias_of}; "
            f"add the {what} to {domain.alias_of}"
        )
    if domain.kind == "relay":
        raise UsageError(
            f"{domain.name} is a relay domain (its mail is passed on, not stored here); "
            f"{'an' if what[:1] in 'aeiou' else 'a'} {what} needs a local domain"
        )
    return domain


def lock(tx: Tx, domain_id: int) -> None:
    """Serialise writers of one domain so limits hold under concurrent commands.

    SQLite transactions already hold the write lock (BEGIN IMMEDIATE); MySQL needs a row lock.
    """
    if tx.dialect == "mysql":
        tx.scalar("SELECT id FROM domains WHERE id = ? FOR UPDATE", (domain_id,))


def add(
    tx: Tx,
    name: str,
    *,
    kind: str = "local",
    alias_of: Domain | None = None,
    transport: str | None = None,
    limits: Mapping[str, int] | None = None,
) -> Domain:
    """Create a domain. An alias domain's target must be a local domain."""
    if kind not in KINDS:
        raise ValueError(f"unknown domain kind {kind!r}")
    if (kind == "alias") != (alias_of is not None):
        raise ValueError("alias_of is required for, and only for, an alias domain")
    if domainmatch.is_wildcard(name) and kind not in domainmatch.WILDCARD_KINDS:
        raise UsageError(f"{name}: a wildcard can be a local or relay domain, not {kind}")
    if alias_of is not None and domainmatch.is_wildcard(alias_of.name):
        raise UsageError(
            f"{alias_of.name} is a wildcard; an alias domain must point at an exact local domain"
        )
    if alias_of is not None and not alias_of.is_local:
        raise UsageError(
            f"{alias_of.name} is not a local domain ({alias_of.kind}); "
            "an alias domain must point at a local domain"
        )
    values = {k: int(v) for k, v in (limits or {}).items()}
    _check_columns(values)
    tx.insert(
        "INSERT INTO domains (name, kind, alias_of, transport, max_mailboxes, max_aliases,"
        " default_quota_bytes, max_message_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            name,
            kind,
            alias_of.id if alias_of else None,
            transport,
            values.get("max_mailboxes", 0),
            values.get("max_aliases", 0),
            values.get("default_quota_bytes", 0),
            values.get("max_message_bytes", 0),
            int(time.time()),
        ),
        conflict=f"domain {name} already exists",
    )
    taken = displaced(tx, name)
    if taken:
        more = f" (and {len(taken) - 3} more)" if len(taken) > 3 else ""
        raise Conflict(
            f"domain {name} would take {', '.join(taken[:3])}{more} from the wildcard "
            "domain that holds them now; remove or move those addresses first"
        )
    return require(tx, name)


def update(tx: Tx, domain_id: int, changes: Mapping[str, Any]) -> None:
    """Change the given ``SETTABLE`` columns of one domain; a mailbox or alias limit below
    what the domain already holds is refused (``UsageError``), 0 (unlimited) never is."""
    if not changes:
        return
    _check_columns(changes)
    _check_limits(tx, domain_id, changes)
    assignments = ", ".join(f"{column} = ?" for column in changes)
    tx.execute(
        f"UPDATE domains SET {assignments} WHERE id = ?",
        (*changes.values(), domain_id),
    )


def _check_limits(tx: Tx, domain_id: int, changes: Mapping[str, Any]) -> None:
    wanted = [(k, int(changes[k])) for k in ("max_mailboxes", "max_aliases") if changes.get(k)]
    if not wanted:
        return
    used = usage(tx, domain_id)
    name = tx.scalar("SELECT name FROM domains WHERE id = ?", (domain_id,))
    for column, limit in wanted:
        have, what = (
            (used.mailboxes, "mailbox") if column == "max_mailboxes" else (used.aliases, "alias")
        )
        if limit < have:
            plural = "es" if have != 1 else ""
            raise UsageError(
                f"domain {name} has {have} {what}{plural}: a limit of {limit} is below that "
                f"(remove some first, or use 0 for unlimited)"
            )


def _check_columns(changes: Mapping[str, Any]) -> None:
    unknown = set(changes) - set(SETTABLE)
    if unknown:
        raise ValueError(f"domain columns that cannot be set: {sorted(unknown)}")


def usage(tx: Tx, domain_id: int) -> Usage:
    mailboxes = tx.scalar("SELECT COUNT(*) FROM mailboxes WHERE domain_id = ?", (domain_id,))
    aliases = tx.scalar(
        "SELECT COUNT(DISTINCT source) FROM aliases WHERE domain_id = ?", (domain_id,)
    )
    rows = tx.all("SELECT name FROM domains WHERE alias_of = ? ORDER BY name", (domain_id,))
    return Usage(int(mailboxes or 0), int(aliases or 0), tuple(r["name"] for r in rows))


def remove(tx: Tx, domain_id: int) -> None:
    """Delete a domain with its alias domains, mailboxes, aliases and forwards (rows only)."""
    tx.execute("DELETE FROM domains WHERE alias_of = ?", (domain_id,))
    tx.execute("DELETE FROM domains WHERE id = ?", (domain_id,))


def list_all(tx: Tx) -> list[Row]:
    """Every domain with its settings and its mailbox and alias-source counts."""
    rows = tx.all(
        "SELECT d.name, d.kind, t.name AS alias_of, d.transport, d.max_mailboxes,"
        " d.max_aliases, d.default_quota_bytes, d.max_message_bytes, d.active,"
        " (SELECT COUNT(*) FROM mailboxes m WHERE m.domain_id = d.id) AS mailboxes,"
        " (SELECT COUNT(DISTINCT a.source) FROM aliases a WHERE a.domain_id = d.id) AS aliases"
        " FROM domains d LEFT JOIN domains t ON t.id = d.alias_of ORDER BY d.name"
    )
    for row in rows:
        row["active"] = bool(row["active"])
        for key in ("mailboxes", "aliases"):
            row[key] = int(row[key])
    return rows
