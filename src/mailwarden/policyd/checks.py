"""The policy checks: one request in, one ``Decision`` out, by asking ``core``.

Who calls it: ``policyd.server`` for every request, Postfix's and Exim's alike.

What runs when (each check can be switched off in ``policy.checks``):

``RCPT``            relay (skipped when ``policy_context=recipient``; with
                    ``policy_context=relay`` only relay runs and a permit answers ``OK``),
                    recipient (unknown 5.1.1; a mailbox without the mail service 5.2.1),
                    access (block lists), send-as, quota, limits (recipients per
                    message, SIZE= against the domain's limit), ratelimit (checked, not
                    counted). A recipient that passes is remembered in the transaction.
``DATA``            limits (``recipient_count``); when every recipient was on an allow
                    list, a ``X-Mailwarden-Allowed: yes`` header is passed on (PREPEND, once
                    per message, never per RCPT).
``END-OF-MESSAGE``  limits (real size against each recipient domain's limit); then, for
                    mail we accept, the message and its recipients are counted against every
                    rate limit that applies (the only place counters grow); and with
                    ``[traffic] counter = "daemons"``, traffic ``out`` for the sender's
                    domain when there is a login (``mailwarden.accounting``; queued in
                    ``apply``, written behind by its own thread, no store read here).
anything else       no decision (DUNNO).

The store is injected: a ``store.facts.PolicyStore`` (``store.sql.SqlStore`` in the
daemon, ``tests.unit.fakestore.FakeStore`` in unit tests); every answer is turned into a
verdict by ``core`` here, never by the store.

Two passes: ``evaluate`` is first run in the event loop with ``CachedFacts`` and no store
read; a cache miss raises ``NeedStore`` and the server runs ``store_pass`` in a worker
thread (one ``PolicyStore.read``; rate counters in one ``PolicyStore.count``).
``evaluate`` changes no state, so running it twice is harmless; the caller applies
``Decision.accept`` afterwards.

Errors: anything raised here (store down, a bug) is the server's to turn into 4.3.0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from mailwarden import accounting
from mailwarden.address import Address, parse_address
from mailwarden.config import Settings
from mailwarden.core import limits, quotacheck, ratelimit, recipient, relay, relaynet, sendas
from mailwarden.core.spamsettings import BLOCK, BLOCKED, AccessLists, access_decision
from mailwarden.errors import UsageError
from mailwarden.metrics import PolicyMetrics
from mailwarden.policyd.cache import MISSING, TTLCache
from mailwarden.policyd.protocol import Request
from mailwarden.policyd.state import Transaction, Transactions
from mailwarden.store.facts import DomainFacts, PolicyFacts, PolicyStore, Quota, RateRow, Resolved
from mailwarden.verdict import OK, Verdict

ALLOWED_HEADER = ("X-Mailwarden-Allowed", "yes")
LOCAL_KINDS = ("local", "alias")


class NeedStore(Exception):
    """A cache-only pass needs the database: run the store pass in a worker thread."""


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    check: str = "all"  # which check decided (a metric label)
    permit: bool = False  # answer OK instead of DUNNO (relay context)
    accept: tuple[str, bool] | None = None  # (recipient, allowed) to remember
    counts: tuple[ratelimit.Limit, ...] = field(default=())  # counters to add to
    rate_period: str = ""  # the period of a rate-limit refusal


class CachedFacts:
    """``PolicyFacts`` through the cache; without a store read a miss raises NeedStore."""

    def __init__(self, cache: TTLCache, facts: PolicyFacts | None, now: int):
        self._cache, self._facts, self.now = cache, facts, now
        # Counted here and added to the metric once per pass (``Engine._counted``):
        # a Prometheus counter takes a lock on every ``inc``.
        self.hits = self.misses = 0

    def _cached(self, key: Hashable, load: Callable[[PolicyFacts], Any]) -> Any:
        value = self._cache.get(key)
        if value is not MISSING:
            self.hits += 1
            return value
        if self._facts is None:
            raise NeedStore
        self.misses += 1
        value = load(self._facts)
        self._cache.put(key, value)
        return value

    def domain(self, name: str) -> DomainFacts | None:
        return self._cached(("domain", name), lambda f: f.domain(name))  # type: ignore[no-any-return]

    def resolve(self, addr: Address, target: str, delimiter: str) -> Resolved:
        return self._cached(  # type: ignore[no-any-return]
            ("resolve", str(addr), target), lambda f: f.resolve(addr, target, delimiter)
        )

    def quota(self, mailbox_id: int) -> Quota | None:
        return self._cached(("quota", mailbox_id), lambda f: f.quota(mailbox_id))  # type: ignore[no-any-return]

    def owned(self, login: str) -> frozenset[str]:
        return self._cached(("owned", login), lambda f: f.owned_addresses(login))  # type: ignore[no-any-return]

    def relay_networks(self) -> tuple[str, ...]:
        # Cached for the TTL only, so an expired entry stops working within seconds.
        return self._cached(("relaynets",), lambda f: f.relay_networks(self.now))  # type: ignore[no-any-return]

    def access(self, recipient: str) -> AccessLists:
        """The list entries and enforced layers for a mailbox address or a bare domain."""
        return self._cached(("access", recipient), lambda f: f.access_lists(recipient))  # type: ignore[no-any-return]

    def rate_limits(self) -> tuple[RateRow, ...]:
        return self._cached(("ratelimits",), lambda f: f.rate_limits())  # type: ignore[no-any-return]

    def rate_usage(self, key: str, period: str) -> ratelimit.Usage:
        if self._facts is None:  # counters are never cached: they are shared and moving
            raise NeedStore
        start, _ = ratelimit.window(period, self.now)
        return self._facts.rate_usage(key, period, start)


class Engine:
    """Decides requests; holds settings, the cache and the transaction table."""

    def __init__(
        self,
        settings: Settings,
        store: PolicyStore,
        cache: TTLCache,
        transactions: Transactions,
        *,
        metrics: PolicyMetrics | None = None,
        clock: Callable[[], float] = time.time,
        traffic: accounting.TrafficSink | None = None,
    ) -> None:
        self.settings = settings
        self.checks = frozenset(settings.policy.checks)
        self.delimiter = settings.mail.recipient_delimiter
        self.store, self.cache, self.transactions = store, cache, transactions
        self.metrics = metrics
        self.clock = clock
        # traffic "out" ([traffic] counter = "daemons"): written behind, never per request
        counting = accounting.counts(settings.traffic.counter, "policyd")
        self.traffic = (traffic or accounting.TrafficRecorder(store)) if counting else None
        # Label children resolved once, not per request (hot path).
        self._hits = metrics.cache.labels(result="hit") if metrics is not None else None
        self._misses = metrics.cache.labels(result="miss") if metrics is not None else None

    # -- the two passes ----------------------------------------------------------------

    def cache_pass(self, req: Request, now: int) -> Decision:
        """Decide from the cache alone; raises NeedStore on a miss or a counter write."""
        decision = self._counted(req, CachedFacts(self.cache, None, now))
        if decision.counts:
            raise NeedStore
        return decision

    def store_pass(self, req: Request, now: int) -> Decision:
        """Decide with the database (worker thread); count accepted mail."""
        with self.store.read() as facts:
            decision = self._counted(req, CachedFacts(self.cache, facts, now))
        if decision.verdict.ok and decision.counts:
            windows = [
                (limit.key, limit.period, ratelimit.window(limit.period, now)[0])
                for limit in decision.counts
            ]
            self.store.count(windows, self._recipients(req))
        return decision

    def _counted(self, req: Request, f: CachedFacts) -> Decision:
        """``evaluate``, then count its cache hits and misses (also when it raised)."""
        try:
            return self.evaluate(req, f)
        finally:
            if self._hits is not None and f.hits:
                self._hits.inc(f.hits)
            if self._misses is not None and f.misses:
                self._misses.inc(f.misses)

    def apply(self, req: Request, decision: Decision) -> None:
        """Update the transaction after the answer is final (event loop)."""
        if decision.accept is not None:
            self.transactions.get(req.instance).accept(*decision.accept)
        if req.state == "END-OF-MESSAGE" and req.instance:
            self.transactions.drop(req.instance)
        if req.state == "END-OF-MESSAGE" and self.traffic is not None and decision.verdict.ok:
            day = accounting.utc_day(self.clock())
            msg = accounting.outbound(req.sender, req.login, req.size, day)
            if msg is not None:
                self.traffic.add(msg)

    # -- dispatch ------------------------------------------------------------------------

    def evaluate(self, req: Request, f: CachedFacts) -> Decision:
        txn = self.transactions.peek(req.instance)
        if req.state == "RCPT":
            return self._rcpt(req, f, txn)
        if req.state == "DATA":
            return self._data(req, txn)
        if req.state == "END-OF-MESSAGE":
            return self._end_of_message(req, f, txn)
        return Decision(OK)

    def _recipients(self, req: Request) -> int:
        txn = self.transactions.peek(req.instance)
        return req.recipient_count or len(txn.recipients) or 1

    # -- RCPT ----------------------------------------------------------------------------

    def _rcpt(self, req: Request, f: CachedFacts, txn: Transaction) -> Decision:
        addr = self._parse(req.recipient)
        dom = f.domain(addr.domain) if addr is not None else None
        if req.context == "relay":
            if "relay" not in self.checks:
                return Decision(OK, "relay")
            return Decision(self._relay(req, f, dom), "relay", permit=True)
        if "relay" in self.checks and req.context != "recipient":
            verdict = self._relay(req, f, dom)
            if not verdict.ok:
                return Decision(verdict, "relay")
        allowed = False
        resolved = Resolved()
        if addr is not None and dom is not None and dom.kind in LOCAL_KINDS:
            resolved = f.resolve(addr, dom.target, self.delimiter)
            if "recipient" in self.checks:
                facts = recipient.RecipientFacts(
                    dom.kind,
                    resolved.mailbox_id,
                    resolved.alias,
                    resolved.catchall,
                    resolved.services,
                    resolved.forwarded,
                    resolved.keep_copy,
                )
                verdict = recipient.decide(facts)
                if not verdict.ok:
                    return Decision(verdict, "recipient")
            if "access" in self.checks:
                listed = self._listed(req, f, resolved.mailbox or dom.target)
                if listed == BLOCK:
                    return Decision(BLOCKED, "access")
                allowed = listed is not None
        for check, verdict in self._rcpt_rules(req, f, txn, dom, resolved):
            if not verdict.ok:
                return Decision(verdict, check)
        hit = self._rate(req, f, txn)
        if hit is not None:
            limit, what = hit
            verdict = ratelimit.refused(limit, what, f.now)
            return Decision(verdict, "ratelimit", rate_period=limit.period)
        return Decision(OK, accept=(req.recipient.lower(), allowed))

    def _relay(self, req: Request, f: CachedFacts, dom: DomainFacts | None) -> Verdict:
        authenticated = bool(req.login)
        hosted = dom.kind if dom is not None else None
        in_network = False
        if not authenticated and hosted is None:
            in_network = relaynet.matches(req.client_address, f.relay_networks())
        return relay.decide(relay.RelayFacts(authenticated, in_network, hosted))

    def _listed(self, req: Request, f: CachedFacts, recipient: str) -> str | None:
        lists = f.access(recipient)
        return access_decision(lists, req.sender, req.client_address, delimiter=self.delimiter)

    def _rcpt_rules(
        self,
        req: Request,
        f: CachedFacts,
        txn: Transaction,
        dom: DomainFacts | None,
        resolved: Resolved,
    ) -> list[tuple[str, Verdict]]:
        out: list[tuple[str, Verdict]] = []
        login = self._login(req.login)
        if "sendas" in self.checks and login:
            verdict = sendas.decide(login, req.sender, f.owned(login), delimiter=self.delimiter)
            out.append(("sendas", verdict))
        if "quota" in self.checks and resolved.mailbox_id is not None:
            q = f.quota(resolved.mailbox_id)
            if q is not None:
                facts = quotacheck.QuotaFacts(
                    q.quota_bytes, q.quota_messages, q.used_bytes, q.used_messages, req.size
                )
                tempfail = self.settings.mail.quota_full_tempfail
                out.append(("quota", quotacheck.decide(facts, tempfail=tempfail)))
        if "limits" in self.checks:
            maximum = self.settings.policy.max_recipients
            out.append(("limits", limits.recipients(len(txn.recipients), maximum)))
            if dom is not None:
                out.append(("limits", limits.message_size(req.size, dom.max_message_bytes)))
        return out

    def _rate(
        self, req: Request, f: CachedFacts, txn: Transaction
    ) -> tuple[ratelimit.Limit, str] | None:
        if "ratelimit" not in self.checks:
            return None
        applying = self._rate_limits(req, f)
        if not applying:
            return None
        checks = [(limit, f.rate_usage(limit.key, limit.period)) for limit in applying]
        pending = len(txn.recipients)
        return ratelimit.first_exceeded(checks, new_message=pending == 0, pending=pending)

    def _rate_limits(self, req: Request, f: CachedFacts) -> list[ratelimit.Limit]:
        rows = f.rate_limits()
        if not rows:
            return []
        # the same selection the milter uses to take refused mail back out
        return ratelimit.applicable(rows, self._login(req.login), req.client_address)

    # -- DATA and END-OF-MESSAGE ---------------------------------------------------------

    def _data(self, req: Request, txn: Transaction) -> Decision:
        if "limits" in self.checks:
            count = req.recipient_count or len(txn.recipients)
            verdict = limits.recipient_count(count, self.settings.policy.max_recipients)
            if not verdict.ok:
                return Decision(verdict, "limits")
        return self._allowed(txn)

    def _end_of_message(self, req: Request, f: CachedFacts, txn: Transaction) -> Decision:
        if "limits" in self.checks and req.size > 0:
            for rcpt in txn.recipients or [req.recipient]:
                addr = self._parse(rcpt)
                dom = f.domain(addr.domain) if addr is not None else None
                if dom is not None:
                    verdict = limits.message_size(req.size, dom.max_message_bytes)
                    if not verdict.ok:
                        return Decision(verdict, "limits")
        decision = self._allowed(txn)
        if "ratelimit" in self.checks:
            counts = tuple(self._rate_limits(req, f))
            return Decision(decision.verdict, decision.check, counts=counts)
        return decision

    def _allowed(self, txn: Transaction) -> Decision:
        if "access" in self.checks and txn.all_allowed:
            return Decision(Verdict("2.0.0", "allowed", headers=(ALLOWED_HEADER,)), "access")
        return Decision(OK)

    # -- helpers -------------------------------------------------------------------------

    def _parse(self, text: str) -> Address | None:
        """A recipient we understand, or None: None is never local (cannot trick relay)."""
        if not text:
            return None
        key = ("parse", text)
        found = self.cache.get(key)  # parsing (IDNA) costs more than the whole lookup
        if found is not MISSING:
            return found  # type: ignore[no-any-return]
        try:
            addr: Address | None = parse_address(text, delimiter=self.delimiter)
        except UsageError:
            addr = None
        self.cache.put(key, addr)
        return addr

    def _login(self, login: str) -> str:
        """``core.sendas.normal_login``, cached (IDNA again)."""
        if not login:
            return ""
        key = ("login", login)
        found = self.cache.get(key)
        if found is MISSING:
            found = sendas.normal_login(login, self.delimiter)
            self.cache.put(key, found)
        return found  # type: ignore[no-any-return]
