"""Traffic report: messages and bytes in and out per local domain and UTC day.

Rules: days are ``YYYY-MM-DD``; the range is at most ``MAX_DAYS`` long and ``until`` is
not before ``since``. A domain admin sees the rows of its domains only (another domain's
row does not exist for it); mailbox users none.

Who calls it: ``api/routes_policy`` (``GET /traffic``) and ``mailwarden traffic --from
--to --domain`` (``admin.traffic``; its one-day form reads ``store.traffic.report``).
The counters behind the rows: ``mailwarden.accounting``.
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from mailwarden import address
from mailwarden.errors import Forbidden, UsageError
from mailwarden.ops.base import Actor, Env
from mailwarden.store import domains, listing
from mailwarden.units import parse_day

MAX_DAYS = 366


def report(
    env: Env, actor: Actor, *, since: str, until: str | None = None, domain: str | None = None
) -> list[dict[str, Any]]:
    if actor.role == "user":
        raise Forbidden("mailbox users have no access to traffic reports")
    first = parse_day(since)
    last = parse_day(until) if until else first
    span = (date.fromisoformat(last) - date.fromisoformat(first)).days
    if span < 0:
        raise UsageError(f"until {last} is before since {first}")
    if span >= MAX_DAYS:
        raise UsageError(f"a report covers at most {MAX_DAYS} days")
    name = address.normalize_domain(domain) if domain else None
    with env.db.read() as tx:
        if name is not None:
            actor.require_sees(name, f"unknown domain {name!r}")
            domains.require(tx, name)
        return listing.traffic_rows(
            tx, first_day=first, last_day=last, domain=name, scope=actor.scope()
        )
