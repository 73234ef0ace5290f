"""Relay network operations: add (permanent or expiring), list, remove, purge, and
``allow_login`` (POP-before-SMTP: a temporary entry after a POP3/IMAP login).

Rules: a network is an address, a CIDR network (host bits cleared, with a note) or a
Sambar-style wildcard, never one that covers everything (``core.relaynet``); an expiry
is a positive duration; a note is at most 255 characters without control characters.
Relay networks are global: only admins change them; a domain admin gets ``Forbidden``
for reading them too (they belong to no domain).

Who calls it: ``admin/relay.py``, ``api/routes``.
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mailwarden.core import relaynet
from mailwarden.errors import Forbidden, NotFound, UsageError
from mailwarden.ops.base import Actor, Env, Page, change, decode_cursor, encode_cursor, page_size
from mailwarden.store import relay
from mailwarden.units import format_iso

MAX_NOTE = 255
MAX_LOGIN_MINUTES = 1440  # config.MAX_POP_BEFORE_SMTP_MINUTES


@dataclass(frozen=True, slots=True)
class Added:
    record: dict[str, Any]
    notes: list[str]


def _require_reader(actor: Actor) -> None:
    if actor.scope() is not None or actor.role == "user":
        raise Forbidden("relay networks are global: only admin and readonly tokens see them")


def check_note(note: str) -> str:
    if len(note) > MAX_NOTE:
        raise UsageError(f"--note is longer than {MAX_NOTE} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in note):
        raise UsageError("--note may not contain control characters (newlines, tabs ...)")
    return note


def lookup_form(text: str) -> str:
    """The stored form of NETWORK; a damaged stored value can still be named exactly."""
    try:
        return relaynet.parse_network(text).text
    except UsageError:
        return text.strip()


def record(entry: relay.RelayNetwork, now: int) -> dict[str, Any]:
    if entry.expires_at is None:
        status = "permanent"
    elif entry.expired(now):
        status = "expired"
    else:
        status = "temporary"
    return {
        "network": entry.network,
        "status": status,
        "expires": format_iso(entry.expires_at),
        "expired": entry.expired(now),
        "note": entry.note,
        "source": entry.source,
        "created": format_iso(entry.created_at),
    }


def add(
    env: Env, actor: Actor, network: str, *, expires_in: int | None = None, note: str = ""
) -> Added:
    """Allow ``network`` to relay, for ``expires_in`` seconds or for good."""
    actor.require_admin("change relay networks")
    parsed = relaynet.parse_network(network)
    note = check_note(note)
    now = int(time.time())
    if expires_in is not None and expires_in <= 0:
        raise UsageError("invalid duration: must be longer than 0")
    expires_at = None if expires_in is None else now + expires_in
    with change(env, actor, "relay.add", parsed.text, None) as ch:
        relay.add(ch.tx, parsed.text, now=now, expires_at=expires_at, note=note)
        entry = relay.get(ch.tx, parsed.text)
        assert entry is not None
        ch.after = record(entry, now)
    notes = []
    if parsed.adjusted:
        notes.append(f"{network.strip()} has host bits set; stored as {parsed.text}")
    return Added(ch.after, notes)


def show(env: Env, actor: Actor, network: str) -> dict[str, Any]:
    _require_reader(actor)
    name = lookup_form(network)
    with env.db.read() as tx:
        entry = relay.get(tx, name)
    if entry is None:
        raise NotFound(f"relay network {name!r} does not exist")
    return record(entry, int(time.time()))


def page(
    env: Env,
    actor: Actor,
    *,
    cursor: str | None = None,
    limit: int | None = None,
    include_expired: bool = False,
) -> Page:
    """Entries by network (the table is small: filtered here, after the store's read)."""
    _require_reader(actor)
    size = page_size(limit)
    after = decode_cursor(cursor)
    now = int(time.time())
    with env.db.read() as tx:
        entries = relay.list_networks(tx, now, include_expired=include_expired)
    rows = [record(e, now) for e in entries if after is None or e.network > after]
    if len(rows) > size:
        return Page(rows[:size], encode_cursor(rows[size - 1]["network"]))
    return Page(rows, None)


def list_all(env: Env, actor: Actor, *, include_expired: bool = False) -> list[dict[str, Any]]:
    _require_reader(actor)
    now = int(time.time())
    with env.db.read() as tx:
        entries = relay.list_networks(tx, now, include_expired=include_expired)
    return [record(e, now) for e in entries]


def remove(env: Env, actor: Actor, network: str) -> str:
    actor.require_admin("change relay networks")
    name = lookup_form(network)
    now = int(time.time())
    with change(env, actor, "relay.remove", name, None) as ch:
        entry = relay.get(ch.tx, name)
        if entry is not None:
            ch.before = record(entry, now)
        relay.remove(ch.tx, name)
    return name


def allow_login(env: Env, actor: Actor, client: str, minutes: int) -> dict[str, Any]:
    """POP-before-SMTP: ``client`` (one address, as Dovecot reports it) may relay for
    ``minutes`` after a POP3/IMAP login (``store.relay.allow_login``). Not audited: one
    row per mail-client login would drown the audit log; ``relay list`` shows the entry.
    """
    actor.require_admin("change relay networks")
    host = relaynet.parse_client(client)
    if host is None or not client.strip():
        raise UsageError(f"invalid client address {client.strip()[:60]!r}: expected one IP address")
    if not 0 < minutes <= MAX_LOGIN_MINUTES:
        raise UsageError(f"--minutes must be 1..{MAX_LOGIN_MINUTES}")
    now = int(time.time())
    with env.db.transaction() as tx:
        done = relay.allow_login(tx, str(host), now=now, expires_at=now + 60 * minutes)
        entry = relay.get(tx, str(host))
    assert entry is not None
    return record(entry, now) | {"result": done}


def purge(env: Env, actor: Actor) -> int:
    actor.require_admin("change relay networks")
    with change(env, actor, "relay.purge", "expired", None) as ch:
        count = relay.purge(ch.tx, int(time.time()))
        ch.after = {"purged": count}
    return count
