"""Traffic per local domain and day (table ``traffic``): the hoster's usage report.

Who calls it: the delivery agent (mail in) and the policy daemon at END-OF-MESSAGE (mail
out) through ``add``, and ``mailwarden traffic`` through ``report``. ``day`` is the UTC
date ``YYYY-MM-DD``. ``add`` is one atomic upsert-increment, so concurrent processes add up.

Errors: none of its own (an unknown ``domain_id`` is a foreign-key ``Conflict``).
"""

from __future__ import annotations

from typing import Any

from mailwarden.store.db import Tx

COUNTERS = ("messages_in", "bytes_in", "messages_out", "bytes_out")


def add(  # noqa: PLR0917 - the row's key, then the four counters
    tx: Tx,
    domain_id: int,
    day: str,
    messages_in: int = 0,
    bytes_in: int = 0,
    messages_out: int = 0,
    bytes_out: int = 0,
) -> None:
    """Add to the counters of ``(domain_id, day)``, creating the row if needed."""
    sql = tx.pick(
        mysql="INSERT INTO traffic (domain_id, day, messages_in, bytes_in, messages_out, "
        "bytes_out) VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE "
        "messages_in = messages_in + VALUES(messages_in), "
        "bytes_in = bytes_in + VALUES(bytes_in), "
        "messages_out = messages_out + VALUES(messages_out), "
        "bytes_out = bytes_out + VALUES(bytes_out)",
        sqlite="INSERT INTO traffic (domain_id, day, messages_in, bytes_in, messages_out, "
        "bytes_out) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (domain_id, day) DO UPDATE SET "
        "messages_in = messages_in + excluded.messages_in, "
        "bytes_in = bytes_in + excluded.bytes_in, "
        "messages_out = messages_out + excluded.messages_out, "
        "bytes_out = bytes_out + excluded.bytes_out",
    )
    tx.execute(
        sql,
        (domain_id, day, messages_in, bytes_in, messages_out, bytes_out),
        conflict=f"no domain with id {domain_id}",
    )


def report(tx: Tx, day: str) -> list[dict[str, Any]]:
    """Rows ``{domain, messages_in, bytes_in, messages_out, bytes_out}`` for every local
    domain on ``day`` (zeros where nothing was counted), by domain name."""
    rows = tx.all(
        "SELECT d.name AS domain, t.messages_in, t.bytes_in, t.messages_out, t.bytes_out "
        "FROM domains d LEFT JOIN traffic t ON t.domain_id = d.id AND t.day = ? "
        "WHERE d.kind = 'local' ORDER BY d.name",
        (day,),
    )
    return [{"domain": str(r["domain"]), **{c: int(r[c] or 0) for c in COUNTERS}} for r in rows]
