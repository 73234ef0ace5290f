"""Policy lookups: the recipient and sender facts only the policy daemon asks for.

Who calls it: ``store.sql.SqlStore`` (the ``PolicyFacts`` of ``store.facts``, which
``policyd.checks`` asks through its TTL cache, from worker threads). Each function takes
an open ``Tx`` and returns the plain facts of ``store.facts`` for ``core``; none decides.

What it reads: domains (kind, alias target, size limit; wildcards by
``core.domainmatch``), mailboxes, aliases (exact and catch-all), forwards (a
forward-only address is a mailbox row), send-as grants and quota usage. It writes
nothing. The daemon's other queries live with their tables and are shared with the
admin CLI: access lists and ``enforce`` flags in ``store.spam``, rate
limits and counters in ``store.ratelimit``, relay networks in ``store.relay``.

Errors: whatever ``store.db`` raises (``StoreUnavailable`` when the database is down);
the daemon turns all of them into 4.3.0.
"""

from __future__ import annotations

from mailwarden.address import Address, strip_extension
from mailwarden.core import domainmatch
from mailwarden.store import lists
from mailwarden.store.db import Tx
from mailwarden.store.facts import DomainFacts, Quota, Resolved

__all__ = ["DomainFacts", "Quota", "Resolved", "domain", "owned_addresses", "quota", "resolve"]


def domain(tx: Tx, name: str) -> DomainFacts | None:
    """The active hosted domain ``name`` (normalised), or None: the exact row, else the
    longest wildcard (``core.domainmatch``); a switched-off winner hosts nothing. A
    wildcard answers under the concrete ``name`` (its mailboxes are stored so)."""
    names = domainmatch.candidates(name)
    marks = ", ".join("?" * len(names))
    rows = {
        str(r["name"]).lower(): r
        for r in tx.all(
            "SELECT d.name, d.kind, d.active, d.max_message_bytes, t.name AS target,"
            " t.active AS target_active, t.max_message_bytes AS target_max FROM domains d"
            f" LEFT JOIN domains t ON t.id = d.alias_of WHERE d.name IN ({marks})",
            tuple(names),
        )
    }
    found = domainmatch.best(name, rows)
    if found is None or not rows[found]["active"]:
        return None
    row = rows[found]
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
        row = tx.one(
            "SELECT m.id, m.services, m.forward_keep_copy,"
            " (SELECT COUNT(*) FROM forwards f WHERE f.mailbox_id = m.id) AS forwards"
            " FROM mailboxes m WHERE m.address = ? AND m.active = 1",
            (name,),
        )
        if row is not None:
            return Resolved(
                mailbox_id=int(row["id"]),
                mailbox=name,
                services=int(row["services"]),
                forwarded=bool(row["forwards"]),
                keep_copy=bool(row["forward_keep_copy"]),
            )
        if tx.one("SELECT 1 AS x FROM aliases WHERE source = ? AND active = 1", (name,)):
            return Resolved(alias=True)
        if lists.is_list(tx, name):  # a mailing list takes mail like an alias
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
