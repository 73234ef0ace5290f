"""Quota usage: a mailbox's limits against what it holds, one mailbox or a page of them.

Rules: limits are bytes and messages (0 = unlimited); usage is what the delivery agent
(and Dovecot's quota_clone) last recorded (None = nothing recorded yet); ``percent`` is
the higher of the bytes and messages shares, rounded to 0.1, None when both are
unlimited or unknown; ``over`` keeps the mailboxes at or above that percent (an
unlimited mailbox is never over). A domain admin sees the mailboxes of its domains only:
another domain's mailbox, or the domain itself, does not exist for it.

Who calls it: ``admin/quota.py`` (``quota show|list``; ``recalc`` counts Maildirs there),
``api/routes_accounts`` (``GET /quota``, ``GET /mailboxes/{address}/quota``).
Errors: see ``mailwarden.ops``; ``UsageError`` for an ``over`` that is not a number >= 0.
"""

from __future__ import annotations

import math
from typing import Any

from mailwarden.address import normalize_domain
from mailwarden.errors import Forbidden, UsageError
from mailwarden.ops.base import Actor, Env, Page, decode_cursor, encode_cursor, page_size
from mailwarden.store import listing, quota, scopes
from mailwarden.units import format_iso

BATCH = 500  # rows read per query while ``over`` filters


def usage_percent(used: int | None, limit: int) -> float | None:
    """Percent of ``limit`` used, None when unlimited (0) or unknown."""
    if used is None or limit <= 0:
        return None
    return round(100.0 * used / limit, 1)


def record(row: dict[str, Any]) -> dict[str, Any]:
    """Raw numbers (JSON): limits 0 = unlimited, usage None = unknown."""
    limit_b, limit_m = int(row["quota_bytes"]), int(row["quota_messages"])
    used_b = None if row["bytes"] is None else int(row["bytes"])
    used_m = None if row["messages"] is None else int(row["messages"])
    shares = [usage_percent(used_b, limit_b), usage_percent(used_m, limit_m)]
    known = [p for p in shares if p is not None]
    return {
        "address": str(row["address"]),
        "quota_bytes": limit_b,
        "quota_messages": limit_m,
        "used_bytes": used_b,
        "used_messages": used_m,
        "percent": max(known) if known else None,
        "updated": format_iso(None if row["updated_at"] is None else int(row["updated_at"])),
    }


def check_over(value: float | str | None) -> float | None:
    """``over`` as a number >= 0 (``"90"`` from the CLI, 90 from the API), or None."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"invalid --over {value!r}: expected a percentage such as 90") from None
    if not 0 <= number < math.inf:
        raise UsageError(f"invalid --over {value!r}: must be a number >= 0")
    return number


def _readable(actor: Actor) -> None:
    if actor.role == "user":
        raise Forbidden("mailbox users read their usage at /me")


def show(env: Env, actor: Actor, address: str) -> dict[str, Any]:
    """The usage of one mailbox (a mailbox user: its own)."""
    with env.db.read() as tx:
        box = scopes.mailbox(tx, address)
        if not (actor.role == "user" and actor.mailbox == box.address):
            actor.require_sees(box.domain, f"mailbox {box.address!r} does not exist")
        return record(quota.report(tx, address=box.address)[0])


def page(
    env: Env,
    actor: Actor,
    *,
    cursor: str | None = None,
    limit: int | None = None,
    domain: str | None = None,
    over: float | str | None = None,
) -> Page:
    """One page of usage records by address (keyset: ``cursor`` is the last address)."""
    _readable(actor)
    size = page_size(limit)
    threshold = check_over(over)
    name = normalize_domain(domain) if domain else None
    after = decode_cursor(cursor)
    items: list[dict[str, Any]] = []
    with env.db.read() as tx:
        if name is not None:
            actor.require_sees(name, f"domain {name!r} does not exist")
            scopes.local_domain(tx, name)
        while len(items) <= size:
            batch = size + 1 if threshold is None else max(size + 1, BATCH)
            rows = listing.quota_page(
                tx, after=after, limit=batch, domain=name, scope=actor.scope()
            )
            for row in rows:
                rec = record(row)
                if threshold is None or (
                    rec["percent"] is not None and rec["percent"] >= threshold
                ):
                    items.append(rec)
            if len(rows) < batch:
                break
            after = str(rows[-1]["address"])
    if len(items) > size:
        items = items[:size]
        return Page(items, encode_cursor(items[-1]["address"]))
    return Page(items, None)


def list_all(
    env: Env, actor: Actor, *, domain: str | None = None, over: float | str | None = None
) -> list[dict[str, Any]]:
    """Every page of ``page``: what ``mailwarden quota list`` prints."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        got = page(env, actor, cursor=cursor, limit=1000, domain=domain, over=over)
        items.extend(got.items)
        if got.next_cursor is None:
            return items
        cursor = got.next_cursor
