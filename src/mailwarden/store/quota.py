"""Quota usage of mailboxes (table ``quota_usage``, limits in ``mailboxes``).

Who calls it: ``mailwarden quota show|list|recalc`` and the delivery agent, which keeps the
Maildir++ ``maildirsize`` file as the truth and mirrors its sums here after each delivery
(``set_usage``) so that the policy daemon can refuse mail for a full mailbox at RCPT time
and admins can list who is close to the limit. ``warned_percent`` remembers the highest
warning level already sent (``set_warned``), so each warning goes out once.

A mailbox without a row has unknown usage (nothing delivered yet); a limit of 0 means
unlimited. Errors: none of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailwarden.store.db import Row, Tx


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    bytes: int
    messages: int
    warned_percent: int
    updated_at: int


def usage(tx: Tx, mailbox_id: int) -> QuotaUsage | None:
    row = tx.one(
        "SELECT bytes, messages, warned_percent, updated_at FROM quota_usage WHERE mailbox_id = ?",
        (mailbox_id,),
    )
    if row is None:
        return None
    return QuotaUsage(
        int(row["bytes"]), int(row["messages"]), int(row["warned_percent"]), int(row["updated_at"])
    )


def set_usage(tx: Tx, mailbox_id: int, bytes_: int, messages: int, now: int) -> None:
    """Record the current usage (insert or update; ``warned_percent`` is kept)."""
    sql = tx.pick(
        mysql="INSERT INTO quota_usage (mailbox_id, bytes, messages, updated_at) "
        "VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE bytes = VALUES(bytes), "
        "messages = VALUES(messages), updated_at = VALUES(updated_at)",
        sqlite="INSERT INTO quota_usage (mailbox_id, bytes, messages, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (mailbox_id) DO UPDATE SET bytes = excluded.bytes, "
        "messages = excluded.messages, updated_at = excluded.updated_at",
    )
    tx.execute(sql, (mailbox_id, max(0, bytes_), max(0, messages), now))


def set_warned(tx: Tx, mailbox_id: int, percent: int) -> None:
    """Remember the warning level sent (0 resets it after the mailbox was cleaned up)."""
    tx.execute(
        "UPDATE quota_usage SET warned_percent = ? WHERE mailbox_id = ?", (percent, mailbox_id)
    )


def mailboxes(tx: Tx, *, domain: str | None = None, address: str | None = None) -> list[Row]:
    """``{id, address, maildir, quota_bytes, quota_messages}`` of every mailbox (of one
    domain, or one address), by address: what ``quota recalc`` walks."""
    sql = (
        "SELECT m.id, m.address, m.maildir, m.quota_bytes, m.quota_messages FROM mailboxes m "
        "JOIN domains d ON d.id = m.domain_id"
    )
    if address is not None:
        return tx.all(sql + " WHERE m.address = ?", (address,))
    if domain is not None:
        return tx.all(sql + " WHERE d.name = ? ORDER BY m.address", (domain,))
    return tx.all(sql + " ORDER BY m.address")


def report(
    tx: Tx, *, domain: str | None = None, address: str | None = None
) -> list[dict[str, Any]]:
    """Rows ``{address, domain, quota_bytes, quota_messages, bytes, messages, updated_at}``
    for every mailbox (of one domain, or one address), by address; usage None if unknown."""
    sql = (
        "SELECT m.address, d.name AS domain, m.quota_bytes, m.quota_messages, "
        "u.bytes, u.messages, u.updated_at FROM mailboxes m "
        "JOIN domains d ON d.id = m.domain_id LEFT JOIN quota_usage u ON u.mailbox_id = m.id"
    )
    if address is not None:
        return tx.all(sql + " WHERE m.address = ?", (address,))
    if domain is not None:
        return tx.all(sql + " WHERE d.name = ? ORDER BY m.address", (domain,))
    return tx.all(sql + " ORDER BY m.address")
