"""Policy lookups: every query the policy daemon runs, in one place.

Who calls it: ``policyd.checks`` (through its TTL cache, from worker threads). Each
function takes an open ``Tx`` and returns plain facts for ``core``; none decides.

What it reads: domains (kind, alias target, size limit), mailboxes, aliases (exact and
catch-all), forwards (a forward-only address is a mailbox row), send-as grants, access
lists and their layers' ``enforce`` flags, rate limits, quota usage, relay networks.
What it writes: ``rate_counters`` (``rate_add``), one upsert per counter and message, so
counters survive restarts and are shared by every policyd on the database.

Errors: whatever ``store.db`` raises (``StoreUnavailable`` when the database is down);
the daemon turns all of them into 4.3.0.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.address import Address, strip_extension
from mailwarden.core.ratelimit import window
from mailwarden.store import relay
from mailwarden.store.db import Tx


@dataclass(frozen=True, slots=True)
class DomainFacts:
    """An active hosted domain; for an alias domain, ``target`` is the local domain."""

    name: str
    kind: str  # local | alias | relay
    target: str  # the domain whose mailboxes serve it (== name unless kind is alias)
    max_message_bytes: int


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a hosted recipient leads to (``core.recipient.RecipientFacts`` plus ids)."""

    mailbox_id: int | None = None
    mailbox: str = ""  # the mailbox address, for per-mailbox lists
    alias: bool = False
    catchall: bool = False


@dataclass(frozen=True, slots=True)
class Quota:
    quota_bytes: int
    quota_messages: int
    used_bytes: int
    used_messages: int


def domain(tx: Tx, name: str) -> DomainFacts | None:
    """The active hosted domain ``name`` (normalised), or None."""
    row = tx.one(
        "SELECT d.kind, d.max_message_bytes, t.name AS target, t.active AS target_active, "
        "t.max_message_bytes AS target_max FROM domains d "
        "LEFT JOIN domains t ON t.id = d.alias_of WHERE d.name = ? AND d.active = 1",
        (name,),
    )
    if row is None:
        return None
    kind = str(row["kind"])
    if kind != "alias":
        return DomainFacts(name, kind, name, int(row["max_message_bytes"]))
    if row["target"] is None or not row["target_active"]:
        return None
    limit = int(row["max_message_bytes"]) or int(row["target_max"])
    return DomainFacts(name, kind, str(row["target"]), limit)


def resolve(tx: Tx, addr: Address, target_domain: str, delimiter: str) -> Resolved:
    """Resolve ``addr`` in ``target_domain``: mailbox, exact alias, then catch-all."""
    exact = Address(addr.local, target_domain)
    names = [str(exact)]
    bare = strip_extension(exact, delimiter) if delimiter else exact
    if bare != exact:
        names.append(str(bare))
    for name in names:  # the full address first, as Postfix's virtual lookups do
        row = tx.one("SELECT id FROM mailboxes WHERE address = ? AND active = 1", (name,))
        if row is not None:
            return Resolved(mailbox_id=int(row["id"]), mailbox=name)
        if tx.one("SELECT 1 AS x FROM aliases WHERE source = ? AND active = 1", (name,)):
            return Resolved(alias=True)
    found = tx.one(
        "SELECT 1 AS x FROM aliases WHERE source = ? AND active = 1", (f"@{target_domain}",)
    )
    return Resolved(catchall=found is not None)


def quota(tx: Tx, mailbox_id: int) -> Quota | None:
    row = tx.one(
        "SELECT m.quota_bytes, m.quota_messages, q.bytes, q.messages FROM mailboxes m "
        "LEFT JOIN quota_usage q ON q.mailbox_id = m.id WHERE m.id = ?",
        (mailbox_id,),
    )
    if row is None:
        return None
    return Quota(
        int(row["quota_bytes"]),
        int(row["quota_messages"]),
        int(row["bytes"] or 0),
        int(row["messages"] or 0),
    )


def owned_addresses(tx: Tx, login: str) -> frozenset[str]:
    """What ``login`` may send as: itself, its aliases, alias-domain twins, grants."""
    box = tx.one(
        "SELECT id, local_part, domain_id FROM mailboxes WHERE address = ? AND active = 1",
        (login,),
    )
    if box is None:
        return frozenset()
    owned = {login}
    locals_by_domain: list[tuple[str, int]] = [(str(box["local_part"]), int(box["domain_id"]))]
    for row in tx.all(
        "SELECT source, local_part, domain_id FROM aliases "
        "WHERE destination = ? AND local_part <> '' AND active = 1",
        (login,),
    ):
        owned.add(str(row["source"]))
        locals_by_domain.append((str(row["local_part"]), int(row["domain_id"])))
    for local, domain_id in locals_by_domain:
        for row in tx.all(
            "SELECT name FROM domains WHERE alias_of = ? AND kind = 'alias' AND active = 1",
            (domain_id,),
        ):
            owned.add(f"{local}@{row['name']}")
    for row in tx.all("SELECT address FROM sendas_grants WHERE mailbox_id = ?", (box["id"],)):
        owned.add(str(row["address"]).lower())
    return frozenset(owned)


def relay_networks(tx: Tx, now: int) -> tuple[str, ...]:
    return tuple(relay.active_networks(tx, now))


def access_entries(tx: Tx, domain_name: str, mailbox: str) -> tuple[tuple[str, str, str], ...]:
    """Allow/block rows as (layer, kind, pattern) for global, the domain and the mailbox."""
    scopes = {"global": "global", domain_name: "domain"}
    if mailbox:
        scopes[mailbox] = "mailbox"
    rows = tx.all(
        "SELECT scope, kind, pattern FROM access_lists WHERE scope IN (?, ?, ?)",
        ("global", domain_name, mailbox or "global"),
    )
    return tuple((scopes[str(r["scope"])], str(r["kind"]), str(r["pattern"])) for r in rows)


def enforce_flags(tx: Tx, domain_name: str, mailbox: str) -> dict[str, bool]:
    """The ``enforce`` flag of each layer's spam settings row (absent = False)."""
    scopes = {"global": "global", domain_name: "domain"}
    if mailbox:
        scopes[mailbox] = "mailbox"
    rows = tx.all(
        "SELECT scope, enforce FROM spam_settings WHERE scope IN (?, ?, ?)",
        ("global", domain_name, mailbox or "global"),
    )
    return {scopes[str(r["scope"])]: bool(r["enforce"]) for r in rows}


def rate_limits(tx: Tx) -> tuple[tuple[str, str, int, int], ...]:
    """Every rate limit as (scope, period, max_messages, max_recipients); a small table."""
    rows = tx.all("SELECT scope, period, max_messages, max_recipients FROM rate_limits")
    return tuple(
        (str(r["scope"]), str(r["period"]), int(r["max_messages"]), int(r["max_recipients"]))
        for r in rows
    )


def rate_usage(tx: Tx, key: str, period: str, now: int) -> tuple[int, int]:
    """(messages, recipients) counted for ``key`` in the window of ``period`` at ``now``."""
    start, _ = window(period, now)
    row = tx.one(
        "SELECT messages, recipients FROM rate_counters "
        "WHERE counter_key = ? AND period = ? AND window_start = ?",
        (key, period, start),
    )
    return (0, 0) if row is None else (int(row["messages"]), int(row["recipients"]))


def rate_add(tx: Tx, key: str, period: str, *, now: int, messages: int, recipients: int) -> None:
    """Add to the counter of the current window; drop this key's finished windows."""
    start, _ = window(period, now)
    tx.execute(
        tx.pick(
            mysql="INSERT INTO rate_counters (counter_key, period, window_start, messages, "
            "recipients) VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE "
            "messages = messages + VALUES(messages), recipients = recipients + VALUES(recipients)",
            sqlite="INSERT INTO rate_counters (counter_key, period, window_start, messages, "
            "recipients) VALUES (?, ?, ?, ?, ?) ON CONFLICT (counter_key, period, window_start) "
            "DO UPDATE SET messages = messages + excluded.messages, "
            "recipients = recipients + excluded.recipients",
        ),
        (key, period, start, messages, recipients),
    )
    tx.execute(
        "DELETE FROM rate_counters WHERE counter_key = ? AND period = ? AND window_start < ?",
        (key, period, start),
    )
