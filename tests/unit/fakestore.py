"""An in-memory store for unit tests: ``PolicyStore`` and ``DeliveryStore`` without SQL.

Who uses it: unit tests of ``policyd.checks.Engine`` and ``delivery.deliver.Deliverer``
(tests/unit/test_policy_fakestore.py, test_delivery_fakestore.py). It answers the
questions of ``store.facts`` with the meaning the SQL store gives them (the contract test,
tests/unit/test_store_facts.py, asks both the same questions), from tables filled with
the ``add_*``/``set_*`` methods below. It decides nothing: the rules stay in ``core``.

Addresses and domain names are taken as given (lower-case, A-labels), as the CLI stores
them. ``queries`` counts the policy questions asked (to see what policyd's cache spares).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from mailwarden.address import Address, strip_extension
from mailwarden.core import domainmatch, ratelimit
from mailwarden.core import vacation as vacation_rules
from mailwarden.core.delivery import Usage, warning_due
from mailwarden.core.spamsettings import AccessLists, Layer, Layers
from mailwarden.store.facts import (
    DeliveryStore,
    DomainFacts,
    PolicyFacts,
    PolicyStore,
    Quota,
    RateRow,
    Recipient,
    Resolved,
    TrafficMessage,
    TrafficTotals,
    Window,
)


@dataclass
class _Domain:
    id: int
    name: str
    kind: str
    alias_of: str | None
    active: bool
    max_message_bytes: int


@dataclass
class _Mailbox:
    id: int
    address: str
    quota_bytes: int
    quota_messages: int
    active: bool
    services: int
    forwards: tuple[str, ...]
    keep_copy: bool
    grants: set[str] = field(default_factory=set)


class FakeStore:
    """``PolicyStore``, ``PolicyFacts`` and ``DeliveryStore`` in memory."""

    def __init__(self) -> None:
        self.domains: dict[str, _Domain] = {}
        self.mailboxes: dict[str, _Mailbox] = {}
        self.aliases: dict[str, list[str]] = {}  # source -> destinations (active rows)
        self.relays: list[tuple[str, int | None]] = []  # (network, expires_at)
        self.spam: dict[str, Layer] = {"global": Layer("folder", 5.0)}  # the seeded row
        self.lists: list[tuple[str, str, str]] = []  # (scope, kind, pattern)
        self.limits: dict[tuple[str, str], tuple[int, int]] = {}  # (scope, period) -> max
        self.counters: dict[Window, ratelimit.Usage] = {}
        self.vacations: dict[int, vacation_rules.Vacation] = {}
        self.replies: dict[tuple[int, str], int] = {}  # (mailbox id, sender) -> sent at
        self.usage: dict[int, tuple[int, int, int]] = {}  # id -> (bytes, messages, warned)
        # (domain name, day) -> [messages_in, bytes_in, messages_out, bytes_out]
        self.traffic: dict[tuple[str, str], list[int]] = {}
        self.queries = 0
        self._ids = 0

    def _id(self) -> int:
        self._ids += 1
        return self._ids

    # --- filling it ------------------------------------------------------------------------

    def add_domain(
        self,
        name: str,
        kind: str = "local",
        *,
        alias_of: str | None = None,
        active: bool = True,
        max_message_bytes: int = 0,
    ) -> None:
        self.domains[name] = _Domain(self._id(), name, kind, alias_of, active, max_message_bytes)

    def add_mailbox(  # noqa: PLR0913 - the columns a test may set
        self,
        address: str,
        *,
        quota_bytes: int = 0,
        quota_messages: int = 0,
        active: bool = True,
        services: int = 7,
        forwards: Sequence[str] = (),
        keep_copy: bool = False,
    ) -> int:
        box = _Mailbox(
            self._id(),
            address,
            quota_bytes,
            quota_messages,
            active,
            services,
            tuple(forwards),
            keep_copy,
        )
        self.mailboxes[address] = box
        return box.id

    def add_alias(self, source: str, *destinations: str) -> None:
        self.aliases.setdefault(source, []).extend(destinations)

    def grant(self, login: str, address: str) -> None:
        self.mailboxes[login].grants.add(address)

    def add_relay(self, network: str, expires_at: int | None = None) -> None:
        self.relays.append((network, expires_at))

    def set_spam(self, scope: str, layer: Layer) -> None:
        self.spam[scope] = layer

    def list_entry(self, scope: str, kind: str, pattern: str) -> None:
        self.lists.append((scope, kind, pattern))

    def set_limit(self, scope: str, period: str, messages: int = 0, recipients: int = 0) -> None:
        self.limits[scope, period] = (messages, recipients)

    def set_vacation(self, address: str, vacation: vacation_rules.Vacation) -> None:
        self.vacations[self.mailboxes[address].id] = vacation

    def set_usage(self, address: str, used_bytes: int, messages: int, warned: int = 0) -> None:
        self.usage[self.mailboxes[address].id] = (used_bytes, messages, warned)

    # --- PolicyStore -----------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[PolicyFacts]:
        yield self

    def count(self, windows: Sequence[Window], recipients: int) -> None:
        for key, period, start in windows:
            used = self.counters.get((key, period, start), ratelimit.Usage())
            self.counters[key, period, start] = ratelimit.Usage(
                used.messages + 1, used.recipients + recipients
            )
            for old in [w for w in self.counters if w[:2] == (key, period) and w[2] < start]:
                del self.counters[old]

    # --- PolicyFacts -----------------------------------------------------------------------

    def domain(self, name: str) -> DomainFacts | None:
        self.queries += 1
        found = domainmatch.best(name, self.domains)  # exact, then the longest wildcard
        dom = None if found is None else self.domains[found]
        if dom is None or not dom.active:
            return None
        if dom.kind != "alias":
            return DomainFacts(name, dom.kind, name, dom.max_message_bytes)
        target = self.domains.get(dom.alias_of or "")
        if target is None or not target.active:
            return None
        limit = dom.max_message_bytes or target.max_message_bytes
        return DomainFacts(name, dom.kind, target.name, limit)

    def resolve(self, addr: Address, target_domain: str, delimiter: str) -> Resolved:
        self.queries += 1
        exact = Address(addr.local, target_domain)
        names = [str(exact)]
        bare = strip_extension(exact, delimiter) if delimiter else exact
        if bare != exact:
            names.append(str(bare))
        for name in names:
            box = self.mailboxes.get(name)
            if box is not None and box.active:
                return Resolved(
                    mailbox_id=box.id,
                    mailbox=name,
                    services=box.services,
                    forwarded=bool(box.forwards),
                    keep_copy=box.keep_copy,
                )
            if self.aliases.get(name):
                return Resolved(alias=True)
        return Resolved(catchall=bool(self.aliases.get(f"@{target_domain}")))

    def quota(self, mailbox_id: int) -> Quota | None:
        self.queries += 1
        box = self._by_id(mailbox_id)
        if box is None:
            return None
        used_bytes, messages, _ = self.usage.get(mailbox_id, (0, 0, 0))
        return Quota(box.quota_bytes, box.quota_messages, used_bytes, messages)

    def owned_addresses(self, login: str) -> frozenset[str]:
        self.queries += 1
        box = self.mailboxes.get(login)
        if box is None or not box.active:
            return frozenset()
        owned = {login}
        names = [login]
        for source, destinations in self.aliases.items():
            if login in destinations and not source.startswith("@"):
                owned.add(source)
                names.append(source)
        for name in names:
            local, _, domain = name.rpartition("@")
            owned.update(f"{local}@{twin}" for twin in self._alias_domains(domain))
        owned.update(grant.lower() for grant in box.grants)
        return frozenset(owned)

    def relay_networks(self, now: int) -> tuple[str, ...]:
        self.queries += 1
        live = (net for net, expires in self.relays if expires is None or expires > now)
        return tuple(sorted(live))

    def access_lists(self, recipient: str) -> AccessLists:
        self.queries += 1
        domain, mailbox = _layer_scopes(recipient)
        names = {"global": "global", domain: "domain", mailbox: "mailbox"}
        rows = sorted((s, p, k) for s, k, p in self.lists if s in names)
        entries = tuple((names[s], k, p) for s, p, k in rows)
        return AccessLists(entries, self.spam_layers(recipient).enforced)

    def rate_limits(self) -> tuple[RateRow, ...]:
        self.queries += 1
        return tuple((s, p, m, r) for (s, p), (m, r) in sorted(self.limits.items()))

    def rate_usage(self, key: str, period: str, window_start: int) -> ratelimit.Usage:
        self.queries += 1
        return self.counters.get((key, period, window_start), ratelimit.Usage())

    # --- DeliveryStore ---------------------------------------------------------------------

    def recipient(self, address: str) -> Recipient | None:
        box = self.mailboxes.get(address)
        local, _, domain = address.rpartition("@")
        host = domainmatch.best(domain, self.domains)
        dom = None if host is None else self.domains[host]
        if box is None or dom is None or dom.kind != "local":
            return None
        return Recipient(
            id=box.id,
            address=address,
            local_part=local,
            domain_id=dom.id,
            domain=domain,
            maildir=f"{domain}/{local}/",
            quota_bytes=box.quota_bytes,
            quota_messages=box.quota_messages,
            active=box.active and dom.active,
            services=box.services,
        )

    def spam_layers(self, address: str) -> Layers:
        domain, mailbox = _layer_scopes(address)
        return Layers(
            self.spam.get("global", Layer()), self.spam.get(domain), self.spam.get(mailbox)
        )

    def vacation(self, mailbox_id: int) -> vacation_rules.Vacation | None:
        return self.vacations.get(mailbox_id)

    def user_addresses(self, recipient: Recipient) -> set[str]:
        found = {recipient.address.lower()}
        for source, destinations in self.aliases.items():
            if recipient.address in destinations and not source.startswith("@"):
                found.add(source.lower())
        found.update(
            f"{recipient.local_part}@{twin}".lower()
            for twin in self._alias_domains(recipient.domain)
        )
        return found

    def claim_vacation_reply(self, mailbox_id: int, sender: str, now: int, interval: int) -> bool:
        key = (mailbox_id, sender.strip().lower())
        sent = self.replies.get(key)
        if sent is not None and sent > now - interval:
            return False
        self.replies[key] = now
        return True

    def record_usage(self, mailbox_id: int, usage: Usage, thresholds: Iterable[int]) -> int | None:
        warned = self.usage.get(mailbox_id, (0, 0, 0))[2]
        due, mark = warning_due(usage.percent(), warned, thresholds)
        self.usage[mailbox_id] = (usage.bytes, usage.messages, mark)
        return due

    # --- TrafficStore ----------------------------------------------------------------------

    def add_traffic(self, messages: Sequence[TrafficMessage]) -> TrafficTotals:
        totals = [0, 0, 0, 0]
        for msg in messages:
            for name in sorted({n for n in map(self._local, msg.in_domains) if n}):
                self._traffic_add(name, msg.day, 0, msg.size, totals)
            out = self._local(msg.out_domain) if msg.out_domain else None
            if out:
                self._traffic_add(out, msg.day, 2, msg.size, totals)
        return TrafficTotals(*totals)

    def _traffic_add(self, name: str, day: str, at: int, size: int, totals: list[int]) -> None:
        row = self.traffic.setdefault((name, day), [0, 0, 0, 0])
        row[at] += 1
        row[at + 1] += size
        totals[at] += 1
        totals[at + 1] += size

    def _local(self, name: str) -> str | None:
        """The local domain ``name`` stands for (as ``store.traffic.local_id``: active or not)."""
        found = domainmatch.best(name, self.domains)
        dom = None if found is None else self.domains[found]
        if dom is not None and dom.kind == "alias":
            dom = self.domains.get(dom.alias_of or "")
        return dom.name if dom is not None and dom.kind == "local" else None

    # --- helpers ---------------------------------------------------------------------------

    def _by_id(self, mailbox_id: int) -> _Mailbox | None:
        return next((b for b in self.mailboxes.values() if b.id == mailbox_id), None)

    def _alias_domains(self, domain: str) -> list[str]:
        return [
            d.name
            for d in self.domains.values()
            if d.kind == "alias" and d.alias_of == domain and d.active
        ]


def _layer_scopes(recipient: str) -> tuple[str, str]:
    """(domain scope, mailbox scope), as ``store.spam`` forms them."""
    value = recipient.lower()
    if "@" not in value:
        return value, ""
    return value.rsplit("@", 1)[1], value


# mypy checks that the fake is what the daemons take (a drifted signature fails `make typecheck`)
_POLICY: type[PolicyStore] = FakeStore
_FACTS: type[PolicyFacts] = FakeStore
_DELIVERY: type[DeliveryStore] = FakeStore
