"""The audit trail: one row per change made through the operations layer.

A row says who (``actor``: ``cli:root@host``, ``api:token-name@ip``, ``me:user@ip``),
what (``action`` such as ``mailbox.add`` and ``object``, the address or name changed),
when (``at``, UNIX seconds), the object's record before and after (JSON text; None for
an add or a remove) and the mail ``domain`` it belongs to (None for global objects).
Records come from ``mailwarden.ops``, which has already dropped secrets from them.

Who calls it: ``ops.audit`` (``record`` inside the transaction of the change, ``page``
for ``mailwarden audit list`` and ``GET /api/v1/audit``).

Errors: whatever ``store.db`` raises.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from mailwarden.store.db import Row, Tx


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    at: int
    actor: str
    action: str
    object: str
    domain: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def record(
    tx: Tx,
    *,
    at: int,
    actor: str,
    action: str,
    obj: str,
    domain: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> int:
    """Write one audit row; return its id."""
    return tx.insert(
        "INSERT INTO audit_log (at, actor, action, object, domain, before_json, after_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, actor, action, obj, domain, _dump(before), _dump(after)),
    )


def _dump(record: dict[str, Any] | None) -> str | None:
    return None if record is None else json.dumps(record, sort_keys=True, default=str)


def page(
    tx: Tx,
    *,
    since: int | None = None,
    domain: str | None = None,
    domains: Collection[str] | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[Entry]:
    """Entries newest first, ``limit`` of them, older than ``after_id`` (the cursor).

    ``domain`` keeps one domain's rows; ``domains`` (a domain admin's scope) keeps only
    rows of those domains (global rows are left out: they belong to no domain admin).
    """
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if domain is not None:
        where.append("domain = ?")
        params.append(domain)
    if domains is not None:
        names = sorted(domains) or [""]
        where.append("domain IN (" + ", ".join("?" for _ in names) + ")")
        params.extend(names)
    if after_id is not None:
        where.append("id < ?")
        params.append(after_id)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    rows = tx.all(
        "SELECT id, at, actor, action, object, domain, before_json, after_json"
        f" FROM audit_log{clause} ORDER BY id DESC LIMIT ?",
        (*params, int(limit)),
    )
    return [_entry(r) for r in rows]


def _entry(row: Row) -> Entry:
    return Entry(
        id=int(row["id"]),
        at=int(row["at"]),
        actor=row["actor"],
        action=row["action"],
        object=row["object"],
        domain=row["domain"],
        before=None if row["before_json"] is None else json.loads(row["before_json"]),
        after=None if row["after_json"] is None else json.loads(row["after_json"]),
    )
