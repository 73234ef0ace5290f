"""Traffic accounting (H-Sphere's per-domain, per-day report): who counts, and the writer.

What is counted, whoever counts it (the ``traffic`` table, ``mailwarden traffic``):

``in``   a message accepted for a local domain: once per message and local domain
         (an alias domain counts for its target, a subdomain for its wildcard domain).
``out``  a message accepted from an authenticated login (SMTP AUTH): once, for the
         local domain of its envelope sender. Mail from relay networks without a login
         is not counted out: its sender address is unproven.

Who counts (``[traffic] counter``; each program counts only in its own mode, so a
message is never counted twice — ``counts``):

``milter``   (default; Postfix) the milter at end of message, both directions, for mail
             it lets through (``milter.traffic``).
``daemons``  (Exim, or Postfix without the milter) the delivery core counts ``in`` when a
             message is delivered (or discarded as spam) for a local mailbox, once per
             LMTP transaction and domain (``delivery.deliver``); policyd counts ``out`` at
             END-OF-MESSAGE when it answers OK to a request with a login
             (``policyd.checks``; Postfix ``smtpd_end_of_data_restrictions``, Exim's data
             ACL). Differences from the milter: mail for aliases that only forward
             elsewhere is not counted ``in`` (nothing is delivered here); with the pipe LDA
             (one recipient per run) a message for two mailboxes of one domain counts twice.

``TrafficRecorder`` queues ``TrafficMessage``s and writes them through a
``store.facts.TrafficStore`` once per ``interval`` on a thread of its own (one transaction
per batch; the milter, lmtpd and policyd). ``TrafficNow`` writes at once (the pipe LDA,
one message per process). Failure: a store error is logged, never turned into a reply —
accounting must not lose or delay mail; a crash loses at most ``interval`` seconds of counts.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from mailwarden.store.facts import TrafficMessage, TrafficStore, TrafficTotals

log = logging.getLogger("mailwarden.traffic")

MILTER, DAEMONS = "milter", "daemons"
COUNTERS = (MILTER, DAEMONS)


def counts(counter: str, program: str) -> bool:
    """Whether ``program`` (``milter``, ``delivery`` or ``policyd``) counts traffic when
    ``[traffic] counter`` is ``counter``."""
    if program == MILTER:
        return counter == MILTER
    return counter == DAEMONS and program in {"delivery", "policyd"}


def utc_day(now: float | None = None) -> str:
    """The UTC day ``YYYY-MM-DD`` of ``now`` (seconds since the epoch; default: now)."""
    if now is None:
        return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%d")


def domain_of(address: str) -> str:
    bare = address.strip().removeprefix("<").removesuffix(">")
    return bare.rpartition("@")[2].lower() if "@" in bare else ""


def message(
    recipients: Iterable[str], sender: str, authenticated: bool, size: int, day: str
) -> TrafficMessage:
    """The milter's view of one accepted message: in for its recipients' domains, out for
    the sender's domain when the sender authenticated."""
    rcpt_domains = tuple(sorted({d for d in (domain_of(r) for r in recipients) if d}))
    return TrafficMessage(day, size, rcpt_domains, domain_of(sender) if authenticated else "")


def inbound(domain: str, size: int, day: str) -> TrafficMessage:
    """A message delivered for a mailbox of ``domain`` (the delivery core)."""
    return TrafficMessage(day, size, (domain.lower(),), "")


def outbound(sender: str, login: str, size: int, day: str) -> TrafficMessage | None:
    """A message accepted at END-OF-MESSAGE (policyd): out for the sender's domain when
    there is a login; None when there is nothing to count."""
    domain = domain_of(sender) if login else ""
    return TrafficMessage(day, max(size, 0), (), domain) if domain else None


class TrafficSink(Protocol):
    def add(self, msg: TrafficMessage) -> None: ...


OnCounted = Callable[[TrafficTotals], None]


class TrafficNow:
    """Writes each message at once (one transaction); never raises."""

    def __init__(self, store: TrafficStore, on_counted: OnCounted | None = None) -> None:
        self.store = store
        self.on_counted = on_counted

    def add(self, msg: TrafficMessage) -> None:
        write(self.store, [msg], self.on_counted)


class TrafficRecorder:
    """Queues messages; one thread of its own writes the queue every ``interval``.

    ``add`` (any thread) only appends under a lock: no thread hand-off, no transaction
    per message. The thread starts at the first ``add`` (so after a pre-fork), and
    ``close`` (also run at interpreter exit) writes the rest.
    """

    def __init__(
        self,
        store: TrafficStore,
        on_counted: OnCounted | None = None,
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.on_counted = on_counted
        self.interval = interval
        self._pending: list[TrafficMessage] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    def add(self, msg: TrafficMessage) -> None:
        """Queue one message; written within ``interval`` seconds."""
        with self._lock:
            if self._closing:
                return
            self._pending.append(msg)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def close(self) -> None:
        """Stop the writer thread after writing what is queued."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            closing = self._wake.wait(self.interval)
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                write(self.store, batch, self.on_counted)
            if closing:
                return


def write(
    store: TrafficStore, batch: list[TrafficMessage], on_counted: OnCounted | None
) -> TrafficTotals | None:
    """Add ``batch`` in one transaction; logs (never raises) when that fails."""
    try:
        totals = store.add_traffic(batch)
    except Exception as exc:  # noqa: BLE001 - accounting must never cost mail
        log.warning("traffic of %d message(s) not recorded: %s", len(batch), exc)
        return None
    if on_counted is not None:
        try:
            on_counted(totals)
        except Exception:
            log.exception("traffic metrics failed")
    return totals
