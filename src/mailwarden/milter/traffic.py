"""Traffic accounting at end of message (H-Sphere's per-domain, per-day report).

For each accepted message: ``messages_in``/``bytes_in`` + 1/size for every distinct
local domain among the recipients (an alias domain counts for its target), and
``messages_out``/``bytes_out`` + 1/size for the sender's domain when the sender
authenticated (SASL, ``{auth_authen}``) and the sender's domain is local. Rows are
written with ``store.traffic.add`` (an atomic upsert, so several milter processes and
threads add up) and mirrored in the ``mailwarden_traffic_*`` Prometheus counters
(label ``direction`` only — never a domain).

Failure: a store error is logged and counted, never turned into a reply — accounting
must not lose or delay mail. ``mailwarden traffic [--day] [--json]`` reads the table.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable

from mailwarden.metrics import MilterMetrics
from mailwarden.store import domains, traffic
from mailwarden.store.db import Database, Tx

log = logging.getLogger("mailwarden.milter")


def utc_day() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")


def domain_of(address: str) -> str:
    bare = address.strip().removeprefix("<").removesuffix(">")
    return bare.rpartition("@")[2].lower() if "@" in bare else ""


class TrafficRecorder:
    """Adds one message's traffic to the store and the counters."""

    def __init__(
        self,
        db: Database | None,
        metrics: MilterMetrics,
        today: Callable[[], str] = utc_day,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.today = today

    def record(
        self, recipients: Iterable[str], sender: str, authenticated: bool, size: int
    ) -> None:
        rcpt_domains = sorted({d for d in (domain_of(r) for r in recipients) if d})
        sender_domain = domain_of(sender) if authenticated else ""
        if self.db is None:
            return
        try:
            with self.db.transaction() as tx:
                n_in = self._add_in(tx, rcpt_domains, size)
                n_out = self._add_out(tx, sender_domain, size)
        except Exception as exc:  # noqa: BLE001 - accounting must never cost mail
            log.warning("milter: traffic not recorded: %s", exc)
            return
        self._count("in", n_in, size)
        self._count("out", n_out, size)

    def _add_in(self, tx: Tx, names: list[str], size: int) -> int:
        ids = {i for i in (_local_id(tx, n) for n in names) if i is not None}
        day = self.today()
        for domain_id in sorted(ids):
            traffic.add(tx, domain_id, day, messages_in=1, bytes_in=size)
        return len(ids)

    def _add_out(self, tx: Tx, name: str, size: int) -> int:
        domain_id = _local_id(tx, name) if name else None
        if domain_id is None:
            return 0
        traffic.add(tx, domain_id, self.today(), messages_out=1, bytes_out=size)
        return 1

    def _count(self, direction: str, messages: int, size: int) -> None:
        if messages:
            self.metrics.traffic_messages.labels(direction).inc(messages)
            self.metrics.traffic_bytes.labels(direction).inc(messages * size)


def _local_id(tx: Tx, name: str) -> int | None:
    """The id of the local domain ``name`` stands for (alias domains -> their target)."""
    domain = domains.get(tx, name)
    if domain is not None and domain.kind == "alias" and domain.alias_of:
        domain = domains.get(tx, domain.alias_of)
    if domain is None or domain.kind != "local":
        return None
    return domain.id
