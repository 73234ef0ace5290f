"""Domain operations: add, show, list, set, remove (with their rules and audit rows).

Rules: a name is a valid domain (``address.normalize_domain``), or for a local or relay
domain a wildcard ``*.domain`` (``core.domainmatch``, ``store.domains``); an alias domain points at
a local domain; mailbox/alias/quota limits apply to local domains only, a transport to
relay domains only, and a transport is ``transport:nexthop``; a limit below what the
domain holds is refused (``store.domains``); ``remove`` refuses a domain that still holds
mailboxes, aliases or alias domains unless ``force`` (rows only: Maildirs stay).

Roles: adding, changing and removing domains is for admins (a domain admin's scope is
given by its token; the hoster sets limits); a domain admin sees its own domains only.

Who calls it: ``admin/domain.py``, ``api/routes``.
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailwarden import address, units
from mailwarden.core import domainmatch
from mailwarden.errors import UsageError
from mailwarden.ops.base import (
    Actor,
    Env,
    Page,
    change,
    check_etag,
    decode_cursor,
    page_size,
    paginate,
)
from mailwarden.store import domains, listing
from mailwarden.store.db import Tx

_TRANSPORT = re.compile(r"^[A-Za-z0-9_.-]*:[\x21-\x7e]*$")
LIMITS = ("max_mailboxes", "max_aliases", "default_quota_bytes", "max_message_bytes")
_LOCAL_ONLY = ("max_mailboxes", "max_aliases", "default_quota_bytes")
# How the CLI names a column in its messages (the API names the field itself).
OPTION = {
    "max_mailboxes": "--max-mailboxes",
    "max_aliases": "--max-aliases",
    "default_quota_bytes": "--default-quota",
    "max_message_bytes": "--max-message-size",
    "transport": "--transport",
}


@dataclass(frozen=True, slots=True)
class Removed:
    name: str
    usage: domains.Usage


def check_transport(text: str | None) -> str | None:
    """A Postfix ``transport:nexthop``; empty text (or None) clears it."""
    value = (text or "").strip()
    if not value:
        return None
    if len(value) > 255 or not _TRANSPORT.match(value):
        raise UsageError(
            f"invalid transport {text!r}: expected transport:nexthop "
            "(e.g. smtp:[mx.example.net]:25)"
        )
    return value


def _check_kind(kind: str, values: Mapping[str, Any]) -> None:
    if kind != "local":
        given = [OPTION[c] for c in _LOCAL_ONLY if c in values]
        if given:
            raise UsageError(
                f"{given[0]} applies to local domains only, not to {_a(kind)} {kind} domain"
            )
    if kind != "relay" and values.get("transport"):
        raise UsageError(
            f"--transport applies to relay domains only, not to {_a(kind)} {kind} domain"
        )


def _check_limits(values: Mapping[str, Any]) -> None:
    for column in LIMITS:
        if column in values and (not isinstance(values[column], int) or values[column] < 0):
            raise UsageError(f"{OPTION[column]}: must be a whole number >= 0 (0 = unlimited)")


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def record(tx: Tx, domain: domains.Domain) -> dict[str, Any]:
    """The domain as the CLI's ``show --json`` and the API return it."""
    used = domains.usage(tx, domain.id)
    return {
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


def _visible(tx: Tx, actor: Actor, name: str) -> domains.Domain:
    actor.require_sees(name, f"unknown domain {name!r}")
    return domains.require(tx, name)


def add(
    env: Env,
    actor: Actor,
    name: str,
    *,
    kind: str = "local",
    alias_of: str | None = None,
    transport: str | None = None,
    limits: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Create a domain; return its record."""
    actor.require_admin("add domains")
    name = domainmatch.normalize(name)
    if kind not in domains.KINDS:
        raise UsageError(f"unknown domain kind {kind!r}: use {', '.join(domains.KINDS)}")
    if (kind == "alias") != bool(alias_of):
        raise UsageError("an alias domain needs alias_of (and only an alias domain has one)")
    values: dict[str, Any] = dict(limits or {})
    _check_limits(values)
    transport = check_transport(transport)
    _check_kind(kind, {**values, "transport": transport})
    target = address.normalize_domain(alias_of) if alias_of else None
    with change(env, actor, "domain.add", name, name) as ch:
        target_domain = domains.require(ch.tx, target) if target else None
        domain = domains.add(
            ch.tx, name, kind=kind, alias_of=target_domain, transport=transport, limits=values
        )
        ch.after = record(ch.tx, domain)
    assert ch.after is not None
    return ch.after


def show(env: Env, actor: Actor, name: str) -> dict[str, Any]:
    name = domainmatch.normalize(name)
    with env.db.read() as tx:
        return record(tx, _visible(tx, actor, name))


def page(
    env: Env,
    actor: Actor,
    *,
    cursor: str | None = None,
    limit: int | None = None,
    kind: str | None = None,
) -> Page:
    size = page_size(limit)
    with env.db.read() as tx:
        rows = listing.domains_page(
            tx, after=decode_cursor(cursor), limit=size + 1, kind=kind, scope=actor.scope()
        )
    return paginate(rows, size, "name")


def list_all(env: Env, actor: Actor) -> list[dict[str, Any]]:
    """Every visible domain (the CLI's ``domain list``)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        got = page(env, actor, cursor=cursor, limit=1000)
        items.extend(got.items)
        if got.next_cursor is None:
            return items
        cursor = got.next_cursor


def update(
    env: Env,
    actor: Actor,
    name: str,
    changes: Mapping[str, Any],
    *,
    if_match: str | None = None,
) -> dict[str, Any]:
    """Change limits, transport or ``active``; return the new record."""
    actor.require_admin("change domains")
    name = domainmatch.normalize(name)
    values = dict(changes)
    if not values:
        raise UsageError("nothing to change: give at least one option (see --help)")
    _check_limits(values)
    if "transport" in values:
        values["transport"] = check_transport(values["transport"])
    if "active" in values:
        values["active"] = int(bool(values["active"]))
    with change(env, actor, "domain.set", name, name) as ch:
        domain = _visible(ch.tx, actor, name)
        ch.before = record(ch.tx, domain)
        check_etag(ch.before, if_match, f"domain {name}")
        _check_kind(domain.kind, values)
        domains.update(ch.tx, domain.id, values)
        ch.after = record(ch.tx, domains.require(ch.tx, name))
    assert ch.after is not None
    return ch.after


def remove(
    env: Env, actor: Actor, name: str, *, force: bool = False, if_match: str | None = None
) -> Removed:
    """Delete a domain (and with ``force`` its mailboxes and aliases: rows only)."""
    actor.require_admin("remove domains")
    name = domainmatch.normalize(name)
    with change(env, actor, "domain.remove", name, name) as ch:
        domain = _visible(ch.tx, actor, name)
        ch.before = record(ch.tx, domain)
        check_etag(ch.before, if_match, f"domain {name}")
        used = domains.usage(ch.tx, domain.id)
        if not used.empty and not force:
            raise UsageError(
                f"domain {name} still has {describe(used)}; use --force to remove them too"
            )
        domains.remove(ch.tx, domain.id)
    return Removed(name, used)


def describe(used: domains.Usage) -> str:
    parts = []
    if used.mailboxes:
        parts.append(f"{used.mailboxes} mailbox" + ("es" if used.mailboxes != 1 else ""))
    if used.aliases:
        parts.append(f"{used.aliases} alias" + ("es" if used.aliases != 1 else ""))
    if used.alias_domains:
        parts.append("alias domain " + ", ".join(used.alias_domains))
    return ", ".join(parts)
