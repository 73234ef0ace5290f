"""Store queries for the delivery core: recipient, vacation log, quota usage.

Spam settings and the vacation message itself come from ``store.spam`` and
``store.vacation``; this module adds what only delivery needs.

Who calls it: ``store.sql.SqlStore`` (the ``DeliveryStore`` of ``store.facts`` the
delivery core holds) and ``delivery.usage`` (lmtpd's write-behind of ``quota_usage``),
each call inside a transaction the caller opens.

The LDA receives the *final* mailbox address: Postfix (or Exim) has already expanded
aliases, forwards and alias domains; only a ``+extension`` may remain, which the caller
strips before ``find_recipient``.

Errors: ``StoreUnavailable``/``StoreError`` from ``store.db`` (the LDA answers 4.3.0).
"""

from __future__ import annotations

from mailwarden.store.db import Tx
from mailwarden.store.facts import Recipient

__all__ = [
    "Recipient",
    "claim_vacation_reply",
    "find_recipient",
    "record_usage",
    "record_usage_only",
    "user_addresses",
    "warned_percent",
]


def find_recipient(tx: Tx, address: str) -> Recipient | None:
    """The mailbox ``address`` (no extension) in a local domain, active or not."""
    row = tx.one(
        "SELECT m.id, m.address, m.local_part, m.domain_id, d.name AS domain, m.maildir,"
        " m.quota_bytes, m.quota_messages, m.active AS m_active, d.active AS d_active, m.services"
        " FROM mailboxes m JOIN domains d ON d.id = m.domain_id"
        " WHERE m.address = ? AND d.kind = 'local'",
        (address,),
    )
    if row is None:
        return None
    return Recipient(
        id=int(row["id"]),
        address=str(row["address"]),
        local_part=str(row["local_part"]),
        domain_id=int(row["domain_id"]),
        domain=str(row["address"]).rpartition("@")[2],  # concrete under a wildcard domain
        maildir=str(row["maildir"]),
        quota_bytes=int(row["quota_bytes"]),
        quota_messages=int(row["quota_messages"]),
        active=bool(row["m_active"]) and bool(row["d_active"]),
        services=int(row["services"]),
    )


def user_addresses(tx: Tx, recipient: Recipient) -> set[str]:
    """The mailbox address, exact aliases delivering to it, and its alias-domain twins."""
    found = {recipient.address.lower()}
    rows = tx.all(
        "SELECT source FROM aliases WHERE destination = ? AND local_part <> '' AND active = 1",
        (recipient.address,),
    )
    found.update(str(r["source"]).lower() for r in rows)
    rows = tx.all(
        "SELECT name FROM domains WHERE alias_of = ? AND kind = 'alias' AND active = 1",
        (recipient.domain_id,),
    )
    found.update(f"{recipient.local_part}@{r['name']}".lower() for r in rows)
    return found


def claim_vacation_reply(tx: Tx, mailbox_id: int, sender: str, now: int, interval: int) -> bool:
    """Record a reply to ``sender`` at ``now`` unless one was sent within ``interval``.

    Atomic against concurrent deliveries: the conditional UPDATE or the INSERT (primary
    key) lets exactly one of them win. Senders are keyed lower-cased, as in
    ``store.vacation``.
    """
    sender = sender.strip().lower()
    changed = tx.execute(
        "UPDATE vacation_log SET sent_at = ? WHERE mailbox_id = ? AND sender = ? AND sent_at <= ?",
        (now, mailbox_id, sender, now - interval),
    )
    if changed:
        return True
    exists = tx.scalar(
        "SELECT 1 FROM vacation_log WHERE mailbox_id = ? AND sender = ?", (mailbox_id, sender)
    )
    if exists:
        return False
    sql = tx.pick(
        mysql="INSERT IGNORE INTO vacation_log (mailbox_id, sender, sent_at) VALUES (?, ?, ?)",
        sqlite="INSERT OR IGNORE INTO vacation_log (mailbox_id, sender, sent_at) VALUES (?, ?, ?)",
    )
    return tx.execute(sql, (mailbox_id, sender, now)) == 1


def warned_percent(tx: Tx, mailbox_id: int) -> int:
    value = tx.scalar("SELECT warned_percent FROM quota_usage WHERE mailbox_id = ?", (mailbox_id,))
    return 0 if value is None else int(value)


def record_usage(
    tx: Tx, mailbox_id: int, used_bytes: int, messages: int, *, warned: int, now: int
) -> None:
    """Upsert the mailbox's row in ``quota_usage`` (read by policyd at RCPT time)."""
    sql = tx.pick(
        mysql="INSERT INTO quota_usage (mailbox_id, bytes, messages, warned_percent, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE bytes = VALUES(bytes),"
        " messages = VALUES(messages), warned_percent = VALUES(warned_percent),"
        " updated_at = VALUES(updated_at)",
        sqlite="INSERT INTO quota_usage (mailbox_id, bytes, messages, warned_percent, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (mailbox_id) DO UPDATE SET bytes = excluded.bytes,"
        " messages = excluded.messages, warned_percent = excluded.warned_percent,"
        " updated_at = excluded.updated_at",
    )
    tx.execute(sql, (mailbox_id, used_bytes, messages, warned, now))


def record_usage_only(tx: Tx, mailbox_id: int, used_bytes: int, messages: int, *, now: int) -> None:
    """Upsert ``bytes``/``messages`` of the mailbox's ``quota_usage`` row, keeping
    ``warned_percent`` (lmtpd's write-behind, ``delivery.usage``)."""
    sql = tx.pick(
        mysql="INSERT INTO quota_usage (mailbox_id, bytes, messages, updated_at)"
        " VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE bytes = VALUES(bytes),"
        " messages = VALUES(messages), updated_at = VALUES(updated_at)",
        sqlite="INSERT INTO quota_usage (mailbox_id, bytes, messages, updated_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (mailbox_id) DO UPDATE SET bytes = excluded.bytes,"
        " messages = excluded.messages, updated_at = excluded.updated_at",
    )
    tx.execute(sql, (mailbox_id, used_bytes, messages, now))
