"""The SQL implementation of the facts interface (``store.facts``) over one ``Database``.

Who calls it: the entry points build one ``SqlStore(db)`` per process and hand it to
``policyd.checks.Engine`` (as its ``PolicyStore``) and to ``delivery.deliver.Deliverer``
(as its ``DeliveryStore``), and to the traffic counters (``accounting``, as their
``TrafficStore``). It only wraps the query modules (``store.policy``, ``store.spam``,
``store.relay``, ``store.ratelimit``, ``store.delivery``, ``store.vacation``,
``store.traffic``): no query is written here, and nothing is decided but the warning
mark of ``record_usage`` (``core.delivery.warning_due``, see ``store.facts``).

Threads: as ``Database`` (a connection per thread); ``SqlPolicyFacts`` belongs to the
transaction of the thread that opened it.

Errors: whatever ``store.db`` raises (``StoreUnavailable`` when the database is down).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence

from mailwarden.address import Address
from mailwarden.core import ratelimit
from mailwarden.core import vacation as vacation_rules
from mailwarden.core.delivery import Usage, warning_due
from mailwarden.core.spamsettings import AccessLists, Layers
from mailwarden.store import delivery, policy, relay, spam, traffic, vacation
from mailwarden.store import ratelimit as rate_store
from mailwarden.store.db import Database, Tx
from mailwarden.store.facts import (
    DomainFacts,
    PolicyFacts,
    Quota,
    RateRow,
    Recipient,
    Resolved,
    TrafficMessage,
    TrafficTotals,
    Window,
)


class SqlPolicyFacts:
    """``PolicyFacts`` answered inside one open transaction."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    def domain(self, name: str) -> DomainFacts | None:
        return policy.domain(self.tx, name)

    def resolve(self, addr: Address, target_domain: str, delimiter: str) -> Resolved:
        return policy.resolve(self.tx, addr, target_domain, delimiter)

    def quota(self, mailbox_id: int) -> Quota | None:
        return policy.quota(self.tx, mailbox_id)

    def owned_addresses(self, login: str) -> frozenset[str]:
        return policy.owned_addresses(self.tx, login)

    def relay_networks(self, now: int) -> tuple[str, ...]:
        return tuple(relay.active_networks(self.tx, now))

    def access_lists(self, recipient: str) -> AccessLists:
        return spam.access_lists(self.tx, recipient)

    def rate_limits(self) -> tuple[RateRow, ...]:
        return rate_store.limit_rows(self.tx)

    def rate_usage(self, key: str, period: str, window_start: int) -> ratelimit.Usage:
        return rate_store.usage(self.tx, key, period, window_start)


class SqlStore:
    """``PolicyStore`` and ``DeliveryStore`` over ``db`` (see the module doc)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- PolicyStore ----------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[PolicyFacts]:
        with self.db.read() as tx:
            yield SqlPolicyFacts(tx)

    def count(self, windows: Sequence[Window], recipients: int) -> None:
        with self.db.transaction() as tx:
            for key, period, start in windows:
                rate_store.add_usage(tx, key, period, start, 1, recipients)
                rate_store.drop_finished(tx, key, period, start)

    # --- DeliveryStore --------------------------------------------------------------------

    def recipient(self, address: str) -> Recipient | None:
        with self.db.read() as tx:
            return delivery.find_recipient(tx, address)

    def spam_layers(self, address: str) -> Layers:
        with self.db.read() as tx:
            return spam.layers_for(tx, address)

    def vacation(self, mailbox_id: int) -> vacation_rules.Vacation | None:
        with self.db.read() as tx:
            stored = vacation.get(tx, mailbox_id)
        return None if stored is None else stored.rule()

    def user_addresses(self, recipient: Recipient) -> set[str]:
        with self.db.read() as tx:
            return delivery.user_addresses(tx, recipient)

    def claim_vacation_reply(self, mailbox_id: int, sender: str, now: int, interval: int) -> bool:
        with self.db.transaction() as tx:
            return delivery.claim_vacation_reply(tx, mailbox_id, sender, now, interval)

    def record_usage(self, mailbox_id: int, usage: Usage, thresholds: Iterable[int]) -> int | None:
        with self.db.transaction() as tx:
            warned = delivery.warned_percent(tx, mailbox_id)
            due, mark = warning_due(usage.percent(), warned, thresholds)
            delivery.record_usage(
                tx, mailbox_id, usage.bytes, usage.messages, warned=mark, now=int(time.time())
            )
        return due

    # --- TrafficStore ---------------------------------------------------------------------

    def add_traffic(self, messages: Sequence[TrafficMessage]) -> TrafficTotals:
        if not messages:
            return TrafficTotals()
        with self.db.transaction() as tx:
            return traffic.count(tx, messages)
