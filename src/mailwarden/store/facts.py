"""The facts interface: every question the policy daemon and the delivery core ask the store.

What it is: ``typing.Protocol`` classes and the plain dataclasses they answer with; no
SQL and no driver here. Two implementations: ``store.sql.SqlStore`` (the real one, over
a ``store.db.Database``, built by the entry points) and ``tests.unit.fakestore.FakeStore``
(in memory, for unit tests of ``policyd.checks`` and ``delivery``). A contract test
(tests/unit/test_store_facts.py) asks both the same questions, so the fake cannot drift.

``PolicyStore`` (``policyd.checks.Engine``)
    ``read()`` opens one read transaction and yields the ``PolicyFacts`` of that
    snapshot (policyd's cache sits in front of it); ``count()`` adds an accepted message
    to the rate-limit counters (one write transaction).
``DeliveryStore`` (``delivery.deliver.Deliverer``, ``delivery.vacation``)
    One question, one transaction: the recipient's mailbox, its spam layers and vacation,
    the vacation reply log (an atomic claim) and ``quota_usage`` (an atomic update).
``TrafficStore`` (both of the above, and the milter: ``accounting.TrafficRecorder``)
    ``add_traffic`` adds a batch of ``TrafficMessage`` to the per-domain, per-day
    ``traffic`` rows in one write transaction (an atomic upsert-increment).

Answers are facts: what is stored, never what it means. The rules that turn them into a
``Verdict`` (recipient, relay, access lists, spam layering, quota, rate limits, vacation)
live once in ``core`` and are called by the daemons; the only rule an implementation
applies is ``core.delivery.warning_due`` inside ``record_usage``, because deciding and
storing the warning mark must be one atomic step.

Errors: an implementation raises ``StoreUnavailable``/``StoreError`` (``mailwarden.errors``)
when the database is down or fails; the daemons turn them into 4.3.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from mailwarden.address import Address
from mailwarden.core import ratelimit
from mailwarden.core import vacation as vacation_rules
from mailwarden.core.delivery import Usage
from mailwarden.core.spamsettings import AccessLists, Layers

# A rate_limits row as ``core.ratelimit.applicable`` takes it:
# (scope, period, max_messages, max_recipients).
RateRow = tuple[str, str, int, int]
# One rate-limit counter: (key, period, window_start) (``core.ratelimit.window``).
Window = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class DomainFacts:
    """An active hosted domain; for an alias domain, ``target`` is the local domain."""

    name: str
    kind: str  # local | alias | relay
    target: str  # the domain whose mailboxes serve it (== name unless kind is alias)
    max_message_bytes: int


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a hosted recipient leads to (``core.recipient.RecipientFacts`` plus ids)."""

    mailbox_id: int | None = None
    mailbox: str = ""  # the mailbox address, for per-mailbox lists
    services: int = 7  # the mailbox's services bits (core.recipient: no mail -> 5.2.1)
    forwarded: bool = False  # the mailbox has forwards
    keep_copy: bool = False  # and keeps a copy of forwarded mail
    alias: bool = False
    catchall: bool = False


@dataclass(frozen=True, slots=True)
class Quota:
    """A mailbox's limits (0 = unlimited) and the usage ``quota_usage`` holds."""

    quota_bytes: int
    quota_messages: int
    used_bytes: int
    used_messages: int


@dataclass(frozen=True, slots=True)
class Recipient:
    """A mailbox in a local domain, as the delivery core needs it."""

    id: int
    address: str
    local_part: str
    domain_id: int
    domain: str
    maildir: str  # relative to the mail root
    quota_bytes: int
    quota_messages: int
    active: bool  # mailbox and its domain both active
    services: int = 7  # services bits: without mail the LDA refuses (core.recipient)


@dataclass(frozen=True, slots=True)
class TrafficMessage:
    """One message's traffic as a counter saw it: the domains it came in for (recipient
    domains as written) and the domain it went out for ("" = none), on UTC ``day``.

    The store maps each name to the local domain it stands for (an alias domain to its
    target, a subdomain to the wildcard domain that hosts it), ignores the others, and
    counts the message once per local domain and direction."""

    day: str  # YYYY-MM-DD (UTC)
    size: int
    in_domains: tuple[str, ...] = ()
    out_domain: str = ""


@dataclass(frozen=True, slots=True)
class TrafficTotals:
    """What ``add_traffic`` counted (local domains only), for the metrics."""

    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0


class TrafficStore(Protocol):
    """The store as a traffic counter holds it."""

    def add_traffic(self, messages: Sequence[TrafficMessage]) -> TrafficTotals:
        """Add ``messages`` to the ``traffic`` rows (one transaction); what was counted."""
        ...


class PolicyFacts(Protocol):
    """What the policy checks ask, within one read transaction (``PolicyStore.read``)."""

    def domain(self, name: str) -> DomainFacts | None:
        """The active hosted domain ``name`` (normalised), or None."""
        ...

    def resolve(self, addr: Address, target_domain: str, delimiter: str) -> Resolved:
        """``addr`` in ``target_domain``: an active mailbox or exact alias (the full
        address first, then without its ``+extension``), else the catch-all."""
        ...

    def quota(self, mailbox_id: int) -> Quota | None:
        """The mailbox's limits and stored usage, or None if it is gone."""
        ...

    def owned_addresses(self, login: str) -> frozenset[str]:
        """What ``login`` may send as: itself, its aliases, its alias-domain twins and
        its grants (empty for no active mailbox)."""
        ...

    def relay_networks(self, now: int) -> tuple[str, ...]:
        """The relay networks (CIDR or wildcard text) not expired at ``now``."""
        ...

    def access_lists(self, recipient: str) -> AccessLists:
        """The allow/block entries for a mailbox address, or for a bare domain name (an
        alias or catch-all address: then only the global and domain layers)."""
        ...

    def rate_limits(self) -> tuple[RateRow, ...]:
        """Every rate limit row (a small table, cached whole)."""
        ...

    def rate_usage(self, key: str, period: str, window_start: int) -> ratelimit.Usage:
        """The counter of ``key`` in the window starting at ``window_start``."""
        ...


class PolicyStore(TrafficStore, Protocol):
    """The store as the policy engine holds it (it counts mail out: ``TrafficStore``)."""

    def read(self) -> AbstractContextManager[PolicyFacts]:
        """One read transaction; its ``PolicyFacts`` answer from one snapshot."""
        ...

    def count(self, windows: Sequence[Window], recipients: int) -> None:
        """Add one message and ``recipients`` to each counter, and drop the counters of
        the same key and period from earlier windows (one write transaction)."""
        ...


class DeliveryStore(TrafficStore, Protocol):
    """The store as the delivery core holds it (each call its own transaction; it counts
    mail in: ``TrafficStore``)."""

    def recipient(self, address: str) -> Recipient | None:
        """The mailbox ``address`` (no extension) in a local domain, active or not."""
        ...

    def spam_layers(self, address: str) -> Layers:
        """The global, domain and mailbox spam settings rows for ``address``."""
        ...

    def vacation(self, mailbox_id: int) -> vacation_rules.Vacation | None:
        """The mailbox's stored vacation (in effect or not), or None."""
        ...

    def user_addresses(self, recipient: Recipient) -> set[str]:
        """The mailbox address, exact aliases delivering to it, and its alias-domain
        twins, lower-cased (RFC 5230 §4.5 ``:addresses``)."""
        ...

    def claim_vacation_reply(self, mailbox_id: int, sender: str, now: int, interval: int) -> bool:
        """Record a reply to ``sender`` at ``now`` unless one was sent within
        ``interval``; atomic against concurrent deliveries (exactly one wins)."""
        ...

    def record_usage(self, mailbox_id: int, usage: Usage, thresholds: Iterable[int]) -> int | None:
        """Store the mailbox's usage after a delivery, move its warning mark by
        ``core.delivery.warning_due`` in the same transaction, and return the warning
        threshold newly crossed (or None). The deliverer's default ``UsageWriter``."""
        ...
