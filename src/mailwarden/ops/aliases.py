"""Alias operations: add (destinations to a source), list, show, remove.

Rules: the source is ``x@domain`` or ``@domain`` (catch-all) of a local domain; each
destination is an address or ``discard``, and ``discard`` stands alone; the rest is the
store's (``store.aliases``: source is no mailbox, alias limit, local destinations exist,
no loop). A domain admin's destinations may be external addresses or addresses of its
own domains: an address of another domain hosted here answers "does not exist", the
same as an address there that does not exist (the domain's content stays hidden).

Who calls it: ``admin/alias.py``, ``api/routes``.
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailwarden import address
from mailwarden.core import domainmatch
from mailwarden.errors import NotFound, UsageError
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
from mailwarden.store import aliases, domains, listing
from mailwarden.store.db import Tx

DISCARD = aliases.DISCARD


@dataclass(frozen=True, slots=True)
class Removed:
    source: str
    removed: int


def parse_destinations(texts: Sequence[str], delimiter: str) -> list[str]:
    """Normalised destinations in the given order, without duplicates."""
    found: list[str] = []
    for text in texts:
        if text.strip().lower() == DISCARD:
            dest = DISCARD
        else:
            dest = str(address.parse_address(text, delimiter=delimiter))
        if dest not in found:
            found.append(dest)
    return found


def source(env: Env, text: str) -> address.Address:
    return address.parse_source(text, delimiter=env.delimiter)


def check_destinations_visible(tx: Tx, actor: Actor, targets: Sequence[str]) -> None:
    """A domain admin may not point at another hosted domain (see the module doc)."""
    if actor.scope() is None:
        return
    for target in targets:
        name = target.rpartition("@")[2]
        if target != DISCARD and domains.get(tx, name) is not None and not actor.sees(name):
            raise UsageError(f"destination {target} does not exist")


def record(tx: Tx, source_name: str) -> dict[str, Any]:
    targets = aliases.destinations(tx, source_name)
    if not targets:
        raise NotFound(f"unknown alias {source_name!r}")
    active = aliases.is_active(tx, source_name)
    return {
        "source": source_name,
        "domain": source_name.rpartition("@")[2],
        "destinations": targets,
        "active": active,
    }


def add(env: Env, actor: Actor, source_text: str, destinations: Sequence[str]) -> dict[str, Any]:
    """Add destinations to ``source`` (creating it); return the alias record."""
    src = source(env, source_text)
    targets = parse_destinations(destinations, env.delimiter)
    if not targets:
        raise UsageError("give at least one destination")
    if DISCARD in targets and len(targets) > 1:
        raise UsageError("discard cannot be combined with other destinations")
    actor.require_sees(src.domain, f"unknown domain {src.domain!r}")
    with change(env, actor, "alias.add", str(src), src.domain) as ch:
        domain = domains.require_local(ch.tx, src.domain, "alias")
        if aliases.source_exists(ch.tx, str(src)):
            ch.before = record(ch.tx, str(src))
        check_destinations_visible(ch.tx, actor, targets)
        name = aliases.add(ch.tx, domain, src.local, targets, delimiter=env.delimiter)
        ch.obj = name
        ch.after = record(ch.tx, name)
    assert ch.after is not None
    return ch.after


def show(env: Env, actor: Actor, source_text: str) -> dict[str, Any]:
    src = source(env, source_text)
    actor.require_sees(src.domain, f"unknown alias {str(src)!r}")
    with env.db.read() as tx:
        return record(tx, str(src))


def replace(
    env: Env,
    actor: Actor,
    source_text: str,
    destinations: Sequence[str],
    *,
    if_match: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Make ``destinations`` the alias's whole list (PUT); (record, created)."""
    src = source(env, source_text)
    targets = parse_destinations(destinations, env.delimiter)
    if not targets:
        raise UsageError("give at least one destination")
    if DISCARD in targets and len(targets) > 1:
        raise UsageError("discard cannot be combined with other destinations")
    actor.require_sees(src.domain, f"unknown domain {src.domain!r}")
    with change(env, actor, "alias.set", str(src), src.domain) as ch:
        domain = domains.require_local(ch.tx, src.domain, "alias")
        if aliases.source_exists(ch.tx, str(src)):
            ch.before = record(ch.tx, str(src))
            check_etag(ch.before, if_match, f"alias {src}")
            aliases.remove(ch.tx, str(src))
        elif if_match is not None and if_match != "*":
            raise NotFound(f"unknown alias {str(src)!r}")
        check_destinations_visible(ch.tx, actor, targets)
        aliases.add(ch.tx, domain, src.local, targets, delimiter=env.delimiter)
        ch.after = record(ch.tx, str(src))
    assert ch.after is not None
    return ch.after, ch.before is None


def page(
    env: Env,
    actor: Actor,
    *,
    cursor: str | None = None,
    limit: int | None = None,
    domain: str | None = None,
) -> Page:
    size = page_size(limit)
    name = domainmatch.normalize(domain) if domain else None
    with env.db.read() as tx:
        if name is not None:
            actor.require_sees(name, f"unknown domain {name!r}")
            domains.require(tx, name)
        rows = listing.aliases_page(
            tx, after=decode_cursor(cursor), limit=size + 1, domain=name, scope=actor.scope()
        )
    return paginate(rows, size, "source")


def list_all(env: Env, actor: Actor, domain: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        got = page(env, actor, cursor=cursor, limit=1000, domain=domain)
        items.extend(got.items)
        if got.next_cursor is None:
            return items
        cursor = got.next_cursor


def remove(
    env: Env,
    actor: Actor,
    source_text: str,
    destinations: Sequence[str] = (),
    *,
    if_match: str | None = None,
) -> Removed:
    """Remove the given destinations of an alias, or all of it."""
    src = str(source(env, source_text))
    domain = src.rpartition("@")[2]
    targets = parse_destinations(destinations, env.delimiter)
    actor.require_sees(domain, f"unknown alias {src!r}")
    with change(env, actor, "alias.remove", src, domain) as ch:
        if aliases.source_exists(ch.tx, src):
            ch.before = record(ch.tx, src)
            check_etag(ch.before, if_match, f"alias {src}")
        count = aliases.remove(ch.tx, src, targets)
        if aliases.source_exists(ch.tx, src):
            ch.after = record(ch.tx, src)
    return Removed(src, count)
