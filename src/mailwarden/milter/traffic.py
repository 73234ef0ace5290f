"""The milter's traffic accounting at end of message (``[traffic] counter = "milter"``).

For each message the milter lets through: ``messages_in``/``bytes_in`` + 1/size for every
distinct local domain among the recipients (an alias domain counts for its target), and
``messages_out``/``bytes_out`` + 1/size for the sender's domain when the sender
authenticated (SASL, ``{auth_authen}``) and the sender's domain is local — the rules of
``mailwarden.accounting``, which also says who counts in the other mode ("daemons": the
delivery agent and policyd; then the milter counts nothing, so nothing counts twice).
Mirrored in the ``mailwarden_traffic_*`` Prometheus counters (label ``direction`` only —
never a domain).

Batched: end of message only queues; one thread writes the queue every second in one
transaction (``accounting.TrafficRecorder`` through ``store.sql.SqlStore.add_traffic``).
Failure: a store error is logged, never turned into a reply — accounting must not lose or
delay mail. ``mailwarden traffic`` reads the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mailwarden import accounting
from mailwarden.metrics import MilterMetrics
from mailwarden.store.db import Database
from mailwarden.store.facts import TrafficTotals
from mailwarden.store.sql import SqlStore

utc_day = accounting.utc_day
domain_of = accounting.domain_of


class TrafficRecorder:
    """Adds messages' traffic to the store and the counters, in batches.

    ``add`` (any thread, at end of message) only queues; ``record`` writes one message at
    once; ``close`` writes the rest. Without a database (``db`` None: none configured, or
    ``[traffic] counter`` is not "milter") every call does nothing.
    """

    def __init__(
        self,
        db: Database | None,
        metrics: MilterMetrics,
        today: Callable[[], str] = utc_day,
        interval: float = 1.0,
    ) -> None:
        self.metrics = metrics
        self.today = today
        self._store = SqlStore(db) if db is not None else None
        self._queue = (
            accounting.TrafficRecorder(self._store, self._count, interval)
            if self._store is not None
            else None
        )

    def add(self, recipients: Iterable[str], sender: str, authenticated: bool, size: int) -> None:
        """Queue one accepted message; written within ``interval`` seconds."""
        if self._queue is not None:
            self._queue.add(
                accounting.message(recipients, sender, authenticated, size, self.today())
            )

    def record(
        self, recipients: Iterable[str], sender: str, authenticated: bool, size: int
    ) -> None:
        """Write one message's traffic now."""
        if self._store is not None:
            msg = accounting.message(recipients, sender, authenticated, size, self.today())
            accounting.write(self._store, [msg], self._count)

    def close(self) -> None:
        """Stop the writer thread after writing what is queued."""
        if self._queue is not None:
            self._queue.close()

    def _count(self, totals: TrafficTotals) -> None:
        for direction, messages, size in (
            ("in", totals.messages_in, totals.bytes_in),
            ("out", totals.messages_out, totals.bytes_out),
        ):
            if messages:
                self.metrics.traffic_messages.labels(direction).inc(messages)
                self.metrics.traffic_bytes.labels(direction).inc(size)
