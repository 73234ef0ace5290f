"""Rate limits and their counters (tables ``rate_limits`` and ``rate_counters``).

Who calls it: ``mailwarden ratelimit`` (set, list, remove) and the policy daemon, which
reads ``usage`` at RCPT time and, after an accepted message (END-OF-MESSAGE), counts it
with ``add_usage`` and drops that counter's finished windows (``drop_finished``); the
milter, which takes a message it rejects or defers back out (``refund``).

Scopes (see ``store.scopes``):
    a mailbox address   the limit of that SASL login;
    a local domain      the default for each mailbox of the domain: every login gets the
                        limit with its own counter; a mailbox's own row for the same
                        period wins over it (also a row of 0/0: that login is unlimited);
    ``client:NETWORK``  a client address or network, counted per client address. When
                        several client networks contain the client, the most specific
                        one's rows apply (``core.ratelimit.client_scope``).
``max_messages``/``max_recipients`` of 0 mean unlimited.

Which limits apply to a message (those rules) is ``core.ratelimit.applicable``, fed with
``limit_rows``; this module decides nothing. Counters are keyed by ``(counter_key,
period, window_start)``; ``core.ratelimit.Limit.key`` is the key to count under
(``login:<address>`` or ``client:<client address>``). The window arithmetic is the
caller's (``core.ratelimit.window``). ``add_usage`` is one atomic upsert-increment, so
concurrent daemons add up and counters survive restarts.

Errors: ``NotFound`` when removing a limit that does not exist; ``UsageError`` for a
period other than hour/day or for setting nothing.
"""

from __future__ import annotations

from typing import Any

from mailwarden.core.ratelimit import Usage as Usage  # noqa: PLC0414 - re-exported
from mailwarden.errors import NotFound, UsageError
from mailwarden.store.db import Tx
from mailwarden.store.scopes import Scope

PERIODS = ("hour", "day")


def check_period(period: str) -> str:
    value = period.strip().lower()
    if value not in PERIODS:
        raise UsageError(f"invalid period {period!r}: use hour or day")
    return value


def set_limit(
    tx: Tx, scope: Scope, period: str, *, messages: int | None, recipients: int | None
) -> dict[str, Any]:
    """Create or change the limit of ``scope`` for ``period``; None keeps a value (0 when
    new). Returns the row as ``list_limits`` shows it."""
    period = check_period(period)
    if messages is None and recipients is None:
        raise UsageError("nothing to set: give --messages and/or --recipients")
    if tx.one("SELECT id FROM rate_limits WHERE scope = ? AND period = ?", (scope.name, period)):
        tx.execute(
            "UPDATE rate_limits SET max_messages = COALESCE(?, max_messages), "
            "max_recipients = COALESCE(?, max_recipients) WHERE scope = ? AND period = ?",
            (messages, recipients, scope.name, period),
        )
    else:
        tx.insert(
            "INSERT INTO rate_limits (scope, domain_id, mailbox_id, period, max_messages, "
            "max_recipients) VALUES (?, ?, ?, ?, ?, ?)",
            (scope.name, scope.domain_id, scope.mailbox_id, period, messages or 0, recipients or 0),
            conflict=f"rate limit of {scope.name!r} per {period} changed concurrently; try again",
        )
    rows = [r for r in list_limits(tx, scope.name) if r["period"] == period]
    return rows[0]


def remove(tx: Tx, scope: str, period: str) -> None:
    period = check_period(period)
    if not tx.execute("DELETE FROM rate_limits WHERE scope = ? AND period = ?", (scope, period)):
        raise NotFound(f"no rate limit for {scope!r} per {period}")


def list_limits(tx: Tx, scope: str | None = None) -> list[dict[str, Any]]:
    """Rows ``{scope, kind, period, messages, recipients}`` by scope and period."""
    sql = (
        "SELECT scope, domain_id, mailbox_id, period, max_messages, max_recipients FROM rate_limits"
    )
    rows = tx.all(sql + " WHERE scope = ?", (scope,)) if scope is not None else tx.all(sql)
    result = [
        {
            "scope": str(r["scope"]),
            "kind": _kind(r),
            "period": str(r["period"]),
            "messages": int(r["max_messages"]),
            "recipients": int(r["max_recipients"]),
        }
        for r in rows
    ]
    result.sort(key=lambda r: (r["kind"], r["scope"], PERIODS.index(r["period"])))
    return result


def limit_rows(tx: Tx) -> tuple[tuple[str, str, int, int], ...]:
    """Every limit as (scope, period, max_messages, max_recipients), the rows
    ``core.ratelimit.select`` takes; a small table the policy daemon caches whole."""
    return tuple((r["scope"], r["period"], r["messages"], r["recipients"]) for r in list_limits(tx))


def add_usage(  # noqa: PLR0917 - the counter's key columns, then what to add
    tx: Tx, key: str, period: str, window_start: int, messages: int, recipients: int
) -> None:
    """Add to the counter of ``(key, period, window_start)``, creating it if needed."""
    sql = tx.pick(
        mysql="INSERT INTO rate_counters (counter_key, period, window_start, messages, "
        "recipients) VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE "
        "messages = messages + VALUES(messages), recipients = recipients + VALUES(recipients)",
        sqlite="INSERT INTO rate_counters (counter_key, period, window_start, messages, "
        "recipients) VALUES (?, ?, ?, ?, ?) ON CONFLICT (counter_key, period, window_start) "
        "DO UPDATE SET messages = messages + excluded.messages, "
        "recipients = recipients + excluded.recipients",
    )
    tx.execute(sql, (key, period, window_start, messages, recipients))


def refund(  # noqa: PLR0917 - the counter's key columns, then what to take back
    tx: Tx, key: str, period: str, window_start: int, messages: int, recipients: int
) -> None:
    """Take back what ``add_usage`` added for a message refused later (never below 0)."""
    tx.execute(
        "UPDATE rate_counters SET "
        "messages = CASE WHEN messages > ? THEN messages - ? ELSE 0 END, "
        "recipients = CASE WHEN recipients > ? THEN recipients - ? ELSE 0 END "
        "WHERE counter_key = ? AND period = ? AND window_start = ?",
        (messages, messages, recipients, recipients, key, period, window_start),
    )


def usage(tx: Tx, key: str, period: str, window_start: int) -> Usage:
    row = tx.one(
        "SELECT messages, recipients FROM rate_counters "
        "WHERE counter_key = ? AND period = ? AND window_start = ?",
        (key, period, window_start),
    )
    return Usage() if row is None else Usage(int(row["messages"]), int(row["recipients"]))


def drop_finished(tx: Tx, key: str, period: str, window_start: int) -> int:
    """Delete the counters of ``(key, period)`` from windows before ``window_start``."""
    return tx.execute(
        "DELETE FROM rate_counters WHERE counter_key = ? AND period = ? AND window_start < ?",
        (key, period, window_start),
    )


def purge_counters(tx: Tx, before: int) -> int:
    """Delete counters of windows that started before ``before``; return how many."""
    return tx.execute("DELETE FROM rate_counters WHERE window_start < ?", (before,))


def _kind(row: dict[str, Any]) -> str:
    if row["mailbox_id"] is not None:
        return "mailbox"
    if row["domain_id"] is not None:
        return "domain"
    return "client"
