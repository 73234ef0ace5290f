"""Rate limit operations: set, list, remove (per mailbox login, domain or client network).

Rules: the scope is a mailbox, a local domain or a client IP/CIDR (``store.scopes``); the
period is hour or day; counts are >= 0 (0 = unlimited), at least one given
(``store.ratelimit``). A domain admin sets and sees the limits of its domains and their
mailboxes; client networks are global (admins only, and readonly to read).

Who calls it: ``admin/ratelimit.py``, ``api/app``.
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

from typing import Any

from mailwarden.errors import Forbidden, NotFound, UsageError
from mailwarden.ops.base import Actor, Env, change
from mailwarden.store import ratelimit, scopes


def _domain(parsed: scopes.ParsedScope) -> str | None:
    if parsed.kind == "domain":
        return parsed.name
    if parsed.kind == "mailbox":
        return parsed.name.rpartition("@")[2]
    return None


def _check_scope(actor: Actor, parsed: scopes.ParsedScope) -> str | None:
    domain = _domain(parsed)
    if domain is None:
        if actor.scope() is not None:
            raise Forbidden("client networks are global: only admin tokens set their limits")
    else:
        actor.require_sees(domain, f"{parsed.kind} {parsed.name!r} does not exist")
    return domain


def _count(value: int | None, name: str) -> int | None:
    if value is not None and (not isinstance(value, int) or value < 0):
        raise UsageError(f"{name} must be a whole number >= 0 (0 = unlimited)")
    return value


def set_limit(
    env: Env,
    actor: Actor,
    scope: str,
    period: str,
    *,
    messages: int | None = None,
    recipients: int | None = None,
) -> dict[str, Any]:
    """Create or change a limit; a count not given keeps its value (0 when new)."""
    period = ratelimit.check_period(period)
    parsed = scopes.parse_scope(scope, clients=True, allow_global=False)
    domain = _check_scope(actor, parsed)
    _count(messages, "messages")
    _count(recipients, "recipients")
    with change(env, actor, "ratelimit.set", f"{parsed.name}/{period}", domain) as ch:
        resolved = scopes.resolve(ch.tx, scope, clients=True, allow_global=False)
        old = [r for r in ratelimit.list_limits(ch.tx, resolved.name) if r["period"] == period]
        ch.before = old[0] if old else None
        ch.after = ratelimit.set_limit(
            ch.tx, resolved, period, messages=messages, recipients=recipients
        )
    return ch.after


def list_limits(env: Env, actor: Actor) -> list[dict[str, Any]]:
    if actor.role == "user":
        raise Forbidden("mailbox users have no access to rate limits")
    with env.db.read() as tx:
        rows = ratelimit.list_limits(tx)
    if actor.scope() is None:
        return rows
    kept = []
    for row in rows:
        domain = _domain(scopes.parse_scope(row["scope"], clients=True))
        if domain is not None and actor.sees(domain):
            kept.append(row)
    return kept


def remove(env: Env, actor: Actor, scope: str, period: str) -> tuple[str, str]:
    period = ratelimit.check_period(period)
    parsed = scopes.parse_scope(scope, clients=True, allow_global=False)
    domain = _check_scope(actor, parsed)
    with change(env, actor, "ratelimit.remove", f"{parsed.name}/{period}", domain) as ch:
        old = [r for r in ratelimit.list_limits(ch.tx, parsed.name) if r["period"] == period]
        if not old:
            raise NotFound(f"no rate limit for {parsed.name!r} per {period}")
        ch.before = old[0]
        ratelimit.remove(ch.tx, parsed.name, period)
    return parsed.name, period
