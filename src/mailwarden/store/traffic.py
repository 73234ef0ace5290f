"""Traffic per local domain and day (table ``traffic``): the hoster's usage report.

Who calls it: ``store.sql.SqlStore.add_traffic`` (``count``: the counters of
``accounting.TrafficRecorder`` in the milter, or in the delivery agent and policyd, as
``[traffic] counter`` says), and ``mailwarden traffic`` through ``report`` (one day, every
local domain) or ``store.listing.traffic_rows`` (a range). ``day`` is the UTC date
``YYYY-MM-DD``. ``add`` is one atomic upsert-increment, so concurrent processes add up.

Errors: none of its own (an unknown ``domain_id`` is a foreign-key ``Conflict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailwarden.store import domains
from mailwarden.store.db import Tx
from mailwarden.store.facts import TrafficMessage, TrafficTotals

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


def count(tx: Tx, messages: Sequence[TrafficMessage]) -> TrafficTotals:
    """Add ``messages`` (see ``TrafficMessage``): each once per local domain and direction,
    summed per (domain, day) first, one lookup per distinct name; what was counted."""
    ids: dict[str, int | None] = {}

    def local(name: str) -> int | None:
        if name not in ids:
            ids[name] = local_id(tx, name)
        return ids[name]

    sums: dict[tuple[int, str], list[int]] = {}
    n_in = n_out = bytes_in = bytes_out = 0
    for msg in messages:
        for domain_id in {i for i in map(local, msg.in_domains) if i is not None}:
            row = sums.setdefault((domain_id, msg.day), [0, 0, 0, 0])
            row[0] += 1
            row[1] += msg.size
            n_in += 1
            bytes_in += msg.size
        out_id = local(msg.out_domain) if msg.out_domain else None
        if out_id is not None:
            row = sums.setdefault((out_id, msg.day), [0, 0, 0, 0])
            row[2] += 1
            row[3] += msg.size
            n_out += 1
            bytes_out += msg.size
    for (domain_id, day), (m_in, b_in, m_out, b_out) in sorted(sums.items()):
        add(tx, domain_id, day, m_in, b_in, m_out, b_out)
    return TrafficTotals(n_in, bytes_in, n_out, bytes_out)


def local_id(tx: Tx, name: str) -> int | None:
    """The id of the local domain ``name`` stands for (alias domains -> their target; a
    subdomain -> the wildcard domain that hosts it), or None."""
    domain = domains.covering(tx, name)
    if domain is not None and domain.kind == "alias" and domain.alias_of:
        domain = domains.get(tx, domain.alias_of)
    if domain is None or domain.kind != "local":
        return None
    return domain.id


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
