"""Reading the audit trail (writing is ``ops.base.change``).

Roles: admins and readonly tokens see every row; a domain admin sees the rows of its
domains only (global rows - relay networks, tokens - are left out); mailbox users none.

Who calls it: ``admin/audit.py`` (``mailwarden audit list``), ``api/routes``.
Errors: ``Forbidden`` for a mailbox user; ``UsageError`` for a bad cursor.
"""

from __future__ import annotations

from typing import Any

from mailwarden import address
from mailwarden.errors import Forbidden, UsageError
from mailwarden.ops.base import Actor, Env, Page, decode_cursor, encode_cursor, page_size
from mailwarden.store import audit
from mailwarden.units import format_iso


def record(entry: audit.Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": format_iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "object": entry.object,
        "domain": entry.domain,
        "before": entry.before,
        "after": entry.after,
    }


def page(
    env: Env,
    actor: Actor,
    *,
    since: int | None = None,
    domain: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Page:
    """Entries newest first."""
    if actor.role == "user":
        raise Forbidden("mailbox users have no access to the audit trail")
    size = page_size(limit)
    name = address.normalize_domain(domain) if domain else None
    after = decode_cursor(cursor)
    if after is not None and not after.isdigit():
        raise UsageError("invalid cursor: pass the next_cursor of the previous page")
    with env.db.read() as tx:
        entries = audit.page(
            tx,
            since=since,
            domain=name,
            domains=actor.scope(),
            after_id=None if after is None else int(after),
            limit=size + 1,
        )
    rows = [record(e) for e in entries]
    if len(rows) > size:
        return Page(rows[:size], encode_cursor(str(rows[size - 1]["id"])))
    return Page(rows, None)
