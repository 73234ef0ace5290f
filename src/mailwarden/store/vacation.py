"""Vacation replies: the message of a mailbox and whom it was sent to (``vacations``,
``vacation_log``).

Who calls it: ``mailwarden vacation`` (set, off, show, list) and the delivery agent
(``get``, ``already_replied``, ``record_reply``), which decides by RFC 3834 whether a
message deserves an automatic reply at all.

A vacation is in effect while ``active`` and ``starts_at <= now < ends_at`` (a NULL bound
is open). ``interval_seconds`` is how long to wait before replying to the same sender
again (RFC 5230 ``:days``, default 7 days). Setting a new message forgets whom the old
one was sent to, so everyone gets the new text once. Senders are compared lower-cased;
a sender longer than the column (320) counts as already answered, so it gets no reply.

Errors: none of its own; database errors come from ``store.db``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailwarden.core import vacation as rules
from mailwarden.store.db import Tx

DEFAULT_INTERVAL = 7 * 86400
MAX_SENDER = 320

_COLUMNS = "mailbox_id, subject, body, starts_at, ends_at, interval_seconds, active, updated_at"


@dataclass(frozen=True, slots=True)
class Vacation:
    mailbox_id: int
    subject: str
    body: str
    starts_at: int | None
    ends_at: int | None
    interval_seconds: int
    active: bool
    updated_at: int

    def in_effect(self, now: int) -> bool:
        """Active, started and not yet ended at ``now`` (``core.vacation.in_window``)."""
        return self.active and rules.in_window(self.starts_at, self.ends_at, now)

    def rule(self) -> rules.Vacation:
        """The facts ``core.vacation`` decides with."""
        return rules.Vacation(
            self.subject,
            self.body,
            self.starts_at,
            self.ends_at,
            self.interval_seconds,
            self.active,
        )


def set_vacation(
    tx: Tx,
    mailbox_id: int,
    *,
    subject: str,
    body: str,
    starts_at: int | None,
    ends_at: int | None,
    interval: int,
    now: int,
) -> None:
    """Create or replace the (active) vacation of a mailbox and forget earlier replies."""
    sql = tx.pick(
        mysql=f"INSERT INTO vacations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 1, ?) "
        "ON DUPLICATE KEY UPDATE subject = VALUES(subject), body = VALUES(body), "
        "starts_at = VALUES(starts_at), ends_at = VALUES(ends_at), "
        "interval_seconds = VALUES(interval_seconds), active = 1, updated_at = VALUES(updated_at)",
        sqlite=f"INSERT INTO vacations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 1, ?) "
        "ON CONFLICT (mailbox_id) DO UPDATE SET subject = excluded.subject, "
        "body = excluded.body, starts_at = excluded.starts_at, ends_at = excluded.ends_at, "
        "interval_seconds = excluded.interval_seconds, active = 1, "
        "updated_at = excluded.updated_at",
    )
    tx.execute(sql, (mailbox_id, subject, body, starts_at, ends_at, interval, now))
    clear_log(tx, mailbox_id)


def off(tx: Tx, mailbox_id: int, now: int) -> bool:
    """Switch the vacation off (the text is kept); False if it was not on."""
    return bool(
        tx.execute(
            "UPDATE vacations SET active = 0, updated_at = ? WHERE mailbox_id = ? AND active = 1",
            (now, mailbox_id),
        )
    )


def get(tx: Tx, mailbox_id: int) -> Vacation | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM vacations WHERE mailbox_id = ?", (mailbox_id,))
    return None if row is None else _vacation(row)


def list_all(tx: Tx) -> list[tuple[str, Vacation]]:
    """Every vacation with its mailbox address, by address."""
    cols = ", ".join(f"v.{c}" for c in _COLUMNS.split(", "))
    rows = tx.all(
        f"SELECT m.address AS address, {cols} FROM vacations v "
        "JOIN mailboxes m ON m.id = v.mailbox_id ORDER BY m.address"
    )
    return [(str(r["address"]), _vacation(r)) for r in rows]


def already_replied(tx: Tx, mailbox_id: int, sender: str, now: int, interval: int) -> bool:
    """True if ``sender`` got a reply from this mailbox less than ``interval`` ago."""
    key = sender.strip().lower()
    if len(key) > MAX_SENDER:
        return True
    sent_at = tx.scalar(
        "SELECT sent_at FROM vacation_log WHERE mailbox_id = ? AND sender = ?", (mailbox_id, key)
    )
    return sent_at is not None and now - int(sent_at) < interval


def record_reply(tx: Tx, mailbox_id: int, sender: str, now: int) -> None:
    """Remember that ``sender`` got a reply at ``now`` (insert or update)."""
    key = sender.strip().lower()
    if len(key) > MAX_SENDER:
        return
    sql = tx.pick(
        mysql="INSERT INTO vacation_log (mailbox_id, sender, sent_at) VALUES (?, ?, ?) "
        "ON DUPLICATE KEY UPDATE sent_at = VALUES(sent_at)",
        sqlite="INSERT INTO vacation_log (mailbox_id, sender, sent_at) VALUES (?, ?, ?) "
        "ON CONFLICT (mailbox_id, sender) DO UPDATE SET sent_at = excluded.sent_at",
    )
    tx.execute(sql, (mailbox_id, key, now))


def clear_log(tx: Tx, mailbox_id: int) -> None:
    tx.execute("DELETE FROM vacation_log WHERE mailbox_id = ?", (mailbox_id,))


def purge_log(tx: Tx, before: int) -> int:
    """Delete reply records older than ``before`` (housekeeping); return how many."""
    return tx.execute("DELETE FROM vacation_log WHERE sent_at < ?", (before,))


def _vacation(row: dict[str, Any]) -> Vacation:
    def opt(value: Any) -> int | None:
        return None if value is None else int(value)

    return Vacation(
        int(row["mailbox_id"]),
        str(row["subject"]),
        str(row["body"]),
        opt(row["starts_at"]),
        opt(row["ends_at"]),
        int(row["interval_seconds"]),
        bool(row["active"]),
        int(row["updated_at"]),
    )
