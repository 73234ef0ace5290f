"""The milter: pymilter callbacks around one scan per message.

Who calls it: libmilter, one thread per MTA connection (``Milter.factory`` builds one
``ScanMilter`` per connection, wired in ``milter.__main__``). Several messages may
follow on one connection; per-message state is reset at MAIL FROM and at ``abort``.

Per message (negotiation in ``ScanMilter``: on TCP only DATA and eom are answered, on a
unix socket only eom, and DATA and end-of-headers are not sent):
    connect   client IP (for allow lists)
    envfrom   sender; authenticated? (macro ``{auth_authen}``, Postfix sends it at MAIL)
    envrcpt   recipients (every one; the scan is once per message, not per recipient)
    data      (TCP) answered CONTINUE at once: the reply keeps TCP from stalling
    header    counted per name; ``Received:`` counted for loop protection; headers a
              sender may not set (``scanverdict.REMOVE`` and mailwarden's own
              ``X-Mailwarden-*``, see ``_strip_forged``) are remembered for deletion
              and kept out of the scanned copy; everything else goes to the ``Spool``
    eoh       (TCP) nothing; sent without a reply only because libmilter needs it
    body      the blank line, then the chunks, appended to the spool
    eom       loop check: more than ``max_received`` -> 554 5.4.6 (nothing scanned);
              ``Scanner.scan`` -> ``Outcome``; forged headers deleted (``chgheader``
              with the 1-based occurrence, last first); verdict headers added; traffic
              recorded; one log line; metrics
    abort / close   the spool is closed (no temp file or fd outlives a transaction)

Replies (DESIGN §4): virus 554 5.7.1 ``Virus <name> detected`` (or DISCARD, or
``quarantine`` = Postfix hold queue, by ``virus_action``); loop 554 5.4.6; spam at or
above ``spam_reject_score`` 554 5.7.1; scanner failure with ``tempfail`` policy and any
unexpected exception 451 4.3.0 (also ``Milter.set_exception_policy(TEMPFAIL)`` as a
last resort). Never an answer of 2xx after an exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import Milter

from mailwarden.config import MilterSettings
from mailwarden.core import scanverdict
from mailwarden.core.scanverdict import AvResult, Outcome, SpamResult
from mailwarden.core.spamsettings import access_decision
from mailwarden.metrics import MilterMetrics
from mailwarden.milter.clamav import ClamdClient
from mailwarden.milter.ratelimit import RateRefund
from mailwarden.milter.spamassassin import SpamdClient
from mailwarden.milter.spool import Spool
from mailwarden.milter.traffic import TrafficRecorder
from mailwarden.store import spam as spam_store
from mailwarden.store.db import Database
from mailwarden.verdict import Verdict

log = logging.getLogger("mailwarden.milter")

# The actions the milter uses (addheader, chgheader, quarantine), and no others: they
# are what ``ScanMilter.negotiate`` asks the MTA for.
FLAGS = Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE
# mailwarden's own header namespace: a sender never sets these (every copy from outside
# is deleted), except ``ALLOWED`` in the one place policyd puts it (``_strip_forged``).
OWN_PREFIX = "x-mailwarden-"
# policyd's ``PREPEND X-Mailwarden-Allowed: yes`` at DATA (policyd.checks.ALLOWED_HEADER):
# smtpd writes it above its own Received: header, which Postfix hides from milters, so
# it is the first header a milter sees.
ALLOWED = "x-mailwarden-allowed"
# pymilter's reply codes, typed (the C module exports them untyped).
CONTINUE: int = Milter.CONTINUE
REJECT: int = Milter.REJECT
TEMPFAIL: int = Milter.TEMPFAIL
DISCARD: int = Milter.DISCARD
T = TypeVar("T")
_Callback = TypeVar("_Callback", bound=Callable[..., int])
_REMOVE = {name.lower(): name for name in scanverdict.REMOVE}


@dataclass
class Message:
    """What the milter learned about one message (facts only)."""

    sender: str = ""
    authenticated: bool = False
    login: str = ""  # {auth_authen}
    client_ip: str = ""
    recipients: list[str] = field(default_factory=list)
    received: int = 0
    header_counts: dict[str, int] = field(default_factory=dict)
    first_header: str = ""  # lower-case name of the first header field
    forged: dict[str, str] = field(default_factory=dict)  # lower-case name -> name to delete
    all_allowed: bool | None = None  # every recipient allow-lists the sender (asked once)
    queue_id: str = ""


STORE_WORKERS = 4
STORE_WAIT = 5.0  # seconds an allow-list lookup may take before we just scan


class Scanner:
    """Everything one scan needs; shared by all connections (thread-safe: no state).

    Store calls run on a small pool of its own threads, not in libmilter's threads:
    ``Database`` keeps one connection per thread, and libmilter starts a thread per
    SMTP connection, so calling it there would open (and leak) a connection each.
    Traffic is queued and written in batches by ``TrafficRecorder``'s own thread
    (accounting must not delay the reply).
    """

    def __init__(
        self,
        settings: MilterSettings,
        metrics: MilterMetrics,
        db: Database | None = None,
        *,
        clamd: ClamdClient | None = None,
        spamd: SpamdClient | None = None,
        rates: RateRefund | None = None,
        count_traffic: bool = True,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.db = db
        self.clamd = clamd
        self.spamd = spamd
        self.rates = rates
        # [traffic] counter = "daemons": lmtpd/LDA and policyd count, the milter does not
        self.traffic = TrafficRecorder(db if count_traffic else None, metrics)
        self._store = ThreadPoolExecutor(STORE_WORKERS, thread_name_prefix="milter-store")

    def record_traffic(self, msg: Message, size: int) -> None:
        """Queued; ``TrafficRecorder`` writes the queue once a second on its own thread."""
        self.traffic.add(msg.recipients, msg.sender, msg.authenticated, size)

    def refund_rate(self, msg: Message, counted_at: float) -> None:
        """A refused message leaves policyd's rate counters (``milter.ratelimit``).

        Waited for (up to ``STORE_WAIT``), so a client that retries at once is already
        judged without it; it only happens for refused mail."""
        if self.rates is None or not msg.recipients:
            return
        rates = self.rates
        try:
            applied = self._store.submit(
                rates.refund, msg.login, msg.client_ip, len(msg.recipients), counted_at
            ).result(timeout=STORE_WAIT)
        except Exception as exc:  # noqa: BLE001 - the refusal stands; the counter stays high
            log.warning("milter: rate counters not refunded (%s)", exc)
            return
        if applied:
            log.info(
                "milter: refused mail taken out of %d rate counter(s) (login=%s client=%s)",
                applied,
                msg.login or "-",
                msg.client_ip or "-",
            )

    def shutdown(self) -> None:
        self.traffic.close()
        self._store.shutdown(wait=True)
        if self.db is not None:
            self.db.close()

    def scan(self, msg: Message, spool: Spool) -> Outcome:
        av = self._av(spool)
        if av.state == scanverdict.VIRUS:
            return scanverdict.decide(av, SpamResult(scanverdict.SKIPPED), self.settings)
        return scanverdict.decide(av, self._spam(msg, spool), self.settings)

    def _av(self, spool: Spool) -> AvResult:
        if self.clamd is None:
            return AvResult(scanverdict.SKIPPED, detail="no clamd configured")
        result = self._timed("clamav", spool.size, lambda: self.clamd.scan(spool.reader()))  # type: ignore[union-attr]
        if result.state in (scanverdict.ERROR, scanverdict.TOO_LARGE):
            self.metrics.scanner_errors.labels("clamav").inc()
            log.warning("milter: clamd %s: %s", result.state, result.detail)
        return result

    def _spam(self, msg: Message, spool: Spool) -> SpamResult:
        skip = scanverdict.spam_skip(spool.size, msg.authenticated, False, self.settings)
        if skip is None and self.spamd is not None and self.all_allowed(msg):
            skip = "allow-listed"  # only asked when spamd would be: no lookup for nothing
        if skip is not None or self.spamd is None:
            return SpamResult(scanverdict.SKIPPED, detail=skip or "no spamd configured")
        spamd = self.spamd
        result = self._timed(
            "spamassassin", spool.size, lambda: spamd.check(spool.reader(), spool.size)
        )
        if result.state == scanverdict.ERROR:
            self.metrics.scanner_errors.labels("spamassassin").inc()
            log.warning("milter: spamd error: %s", result.detail)
        return result

    def _timed(self, scanner: str, size: int, call: Callable[[], T]) -> T:
        start = time.monotonic()
        try:
            return call()
        finally:
            self.metrics.scan_latency.labels(scanner).observe(time.monotonic() - start)
            self.metrics.bytes_scanned.labels(scanner).inc(size)

    def all_allowed(self, msg: Message) -> bool:
        """True when every recipient's allow list allows the sender (and none blocks).

        Asked at most once per message (the answer is kept in ``msg``)."""
        if msg.all_allowed is None:
            msg.all_allowed = self._read_all_allowed(msg)
        return msg.all_allowed

    def _read_all_allowed(self, msg: Message) -> bool:
        if self.db is None or not msg.recipients or msg.sender in ("", "<>"):
            return False
        try:
            return self._store.submit(self._read_allowed, msg).result(timeout=STORE_WAIT)
        except Exception as exc:  # noqa: BLE001 - no allow list then: scan it
            log.warning("milter: allow lists not read (%s); scanning", exc)
            return False

    def _read_allowed(self, msg: Message) -> bool:
        assert self.db is not None
        with self.db.read() as tx:
            return all(
                access_decision(
                    spam_store.access_lists(tx, _bare(r)), _bare(msg.sender), msg.client_ip
                )
                == "allow"
                for r in msg.recipients
            )


def _noreply(func: _Callback) -> _Callback:
    """``Milter.noreply``, typed: the MTA does not wait for this callback's answer."""
    return cast(_Callback, Milter.noreply(func))


def _raw_bytes(func: _Callback) -> _Callback:
    """``Milter.decode("bytes")``, typed: pymilter passes header values undecoded."""
    return cast(_Callback, Milter.decode("bytes")(func))


class ScanMilter(Milter.Base):  # type: ignore[misc]
    """One SMTP connection. Thin: facts in, ``Scanner.scan``, outcome out.

    Negotiation (``negotiate``; Postfix >= 2.6 honours it, libmilter answers CONTINUE
    itself for an older MTA): actions ``FLAGS`` only. Protocol steps: HELO and unknown
    commands are not sent at all (``Milter.Base`` marks them ``@nocallback``); connect,
    MAIL, RCPT, each header, end-of-headers and each body chunk are ``@noreply`` (sent,
    not waited for). Two steps are answered: DATA and end of message. On a unix socket
    (``answer_data=False``, chosen by ``milter.__main__`` from the listen address) DATA
    and end-of-headers are not sent at all: one round trip per message.

    Why DATA is answered although it decides nothing: when the MTA sends MAIL and RCPT
    and nothing is due back, the last of those small TCP packets stays unacknowledged
    (the milter host delays its ACK by 40 ms, as no reply is due), and Postfix's cleanup,
    which writes the headers next on the same socket without TCP_NODELAY, is held by
    Nagle's algorithm until that ACK comes: a fixed ~40 ms per message on TCP
    (docs/benchmarks.md). Answering DATA acknowledges everything before the content is
    sent. A unix socket has no Nagle and no delayed ACK, so there the DATA round trip
    would only cost (about 0.2 ms of milter CPU per message in bench/bench_milter.py).
    With DATA answered, end-of-headers must be sent too (as no-reply, not skipped):
    libmilter's state table goes from DATA only to a header or end-of-headers, so with
    DATA on and EOH off it drops the end of a message that has no header at all.

    Every decision is made at end of message. A no-reply callback cannot refuse
    anything, so it never raises: a failure in one is remembered (``self.failed``) and
    answered 451 4.3.0 at end of message.
    """

    def __init__(self, scanner: Scanner, *, answer_data: bool = True) -> None:
        self.scanner = scanner
        self.answer_data = answer_data
        self.client_ip = ""
        self.msg = Message()
        self.spool: Spool | None = None
        self.in_body = False
        self.failed = ""
        self.started = 0.0
        self.eom_at = 0.0

    def negotiate(self, opts: list[int]) -> int:
        """pymilter's negotiation (protocol steps from the decorators), asking only ``FLAGS``.

        ``Milter.Base.negotiate`` would ask for every action the MTA offers (``opts[0]``).
        Without ``answer_data`` (a unix socket) DATA and end-of-headers are not sent at all.
        """
        offered = opts[1]
        rc = cast(int, super().negotiate(opts))
        if rc == CONTINUE:
            opts[0] = self._actions = opts[0] & FLAGS
            if not self.answer_data:
                skip = offered & (Milter.P_NODATA | Milter.P_NOEOH)
                opts[1] = self._protocol = (opts[1] | skip) & ~Milter.P_NR_EOH
        return rc

    # --- connection and envelope (no reply) -----------------------------------------------

    @_noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        if isinstance(hostaddr, tuple) and hostaddr:
            self.client_ip = str(hostaddr[0])
        return CONTINUE

    @_noreply
    def envfrom(self, mailfrom: str, *params: str) -> int:
        try:
            self._reset()
            self.started = time.monotonic()
            authen = self.getsymval("{auth_authen}")
            self.msg = Message(
                sender=mailfrom,
                authenticated=bool(authen),
                login=authen or "",
                client_ip=self.client_ip,
            )
            self.spool = Spool(self.scanner.settings.spool_threshold)
        except Exception as exc:  # noqa: BLE001 - no reply possible here; 451 at eom
            self.failed = f"MAIL: {exc!r}"
        return CONTINUE

    @_noreply
    def envrcpt(self, to: str, *params: str) -> int:
        self.msg.recipients.append(to)
        return CONTINUE

    def data(self) -> int:
        """Answered at once, on purpose (see the class docstring): nothing to decide."""
        return CONTINUE

    # --- content (no reply) ----------------------------------------------------------------

    @_noreply
    @_raw_bytes
    def header(self, name: str, value: bytes) -> int:
        """One header field, value as raw bytes (we scan the bytes as sent).

        Counted per name; ``Received:`` counted for loop protection; the verdict headers
        of ``scanverdict.REMOVE`` and every ``X-Mailwarden-*`` header remembered for
        deletion and kept out of the scan.
        """
        try:
            key = name.lower()
            msg = self.msg
            counts = msg.header_counts
            if not counts:
                msg.first_header = key
            counts[key] = counts.get(key, 0) + 1
            if key == "received":
                msg.received += 1
            if key in _REMOVE or key.startswith(OWN_PREFIX):
                msg.forged.setdefault(key, _REMOVE.get(key, name))
            elif self.spool is not None:
                self.spool.add_header(name, value)
        except Exception as exc:  # noqa: BLE001 - no reply possible here; 451 at eom
            self.failed = self.failed or f"header: {exc!r}"
        return CONTINUE

    @_noreply
    def body(self, chunk: bytes) -> int:
        try:
            if self.spool is not None:
                if not self.in_body:
                    self.in_body = True
                    self.spool.write(b"\r\n")
                self.spool.write(chunk)
        except Exception as exc:  # noqa: BLE001 - no reply possible here; 451 at eom
            self.failed = self.failed or f"body: {exc!r}"
        return CONTINUE

    @_noreply
    def eoh(self) -> int:
        """Nothing to do; received (without a reply) only for libmilter's state table."""
        return CONTINUE

    # --- end of message: every decision ---------------------------------------------------

    def eom(self) -> int:
        self.eom_at = time.time()  # just after policyd counted the message (END-OF-MESSAGE)
        try:
            self.msg.queue_id = self.getsymval("i") or ""
            if self.failed:
                raise RuntimeError(self.failed)
            if self.spool is None:
                raise RuntimeError("end of message without MAIL FROM")
            loop = scanverdict.loop_verdict(self.msg.received, self.scanner.settings)
            if loop is not None:
                self._finish(Outcome(loop, scanverdict.REJECT, "loop", reason="loop"))
                return self._reply(loop, REJECT)
            if not self.in_body:  # empty body: still the blank line after the headers
                self.in_body = True
                self.spool.write(b"\r\n")
            outcome = self.scanner.scan(self.msg, self.spool)
            return self._apply(outcome)
        except Exception:
            log.exception(
                "milter: %s: internal error, answering 451 4.3.0", self.msg.queue_id or "-"
            )
            verdict = Verdict("4.3.0", "Temporary failure, try again later")
            self._finish(
                Outcome(verdict, scanverdict.TEMPFAIL, "tempfail", reason="internal error")
            )
            return self._reply(verdict, TEMPFAIL)
        finally:
            self._reset()

    def abort(self) -> int:
        self._reset()
        return CONTINUE

    def close(self) -> int:
        self._reset()
        return CONTINUE

    # --- helpers -------------------------------------------------------------------------

    def _apply(self, outcome: Outcome) -> int:
        if outcome.action == scanverdict.REJECT:
            self._finish(outcome)
            return self._reply(outcome.verdict, REJECT)
        if outcome.action == scanverdict.TEMPFAIL:
            self._finish(outcome)
            return self._reply(outcome.verdict, TEMPFAIL)
        if outcome.action == scanverdict.DISCARD:
            self._finish(outcome)
            return DISCARD
        self._strip_forged()
        for name, value in outcome.add_headers:
            self.addheader(name, value)
        if outcome.action == scanverdict.QUARANTINE:
            self.quarantine(outcome.verdict.text)
        self._finish(outcome)
        self.scanner.record_traffic(self.msg, self.spool.size if self.spool is not None else 0)
        return CONTINUE

    def _strip_forged(self) -> None:
        """Delete every forged header, last occurrence first (1-based index).

        Forged: the verdict headers (``scanverdict.REMOVE``) and all of mailwarden's own
        namespace (``X-Mailwarden-*``). One exception: the topmost header, when it is
        ``X-Mailwarden-Allowed`` and the allow lists confirm it (policyd puts it there;
        a copy a sender wrote there is then true anyway), stays."""
        msg = self.msg
        keep_first = msg.first_header == ALLOWED and self.scanner.all_allowed(msg)
        for key, name in msg.forged.items():
            last = 2 if keep_first and key == ALLOWED else 1
            for index in range(msg.header_counts.get(key, 0), last - 1, -1):
                self.chgheader(name, index, None)

    def _reply(self, verdict: Verdict, code: int) -> int:
        self.setreply(str(verdict.smtp_code), verdict.dsn, verdict.text.replace("%", "?"))
        return code

    def _finish(self, outcome: Outcome) -> None:
        if outcome.action in (scanverdict.REJECT, scanverdict.TEMPFAIL):
            self.scanner.refund_rate(self.msg, self.eom_at)
        self.scanner.metrics.messages.labels(outcome.label).inc()
        elapsed = (time.monotonic() - self.started) * 1000 if self.started else 0.0
        log.info(
            "milter: %s: from=%s rcpts=%d size=%d auth=%s verdict=%s dsn=%s %s (%.0f ms)",
            self.msg.queue_id or "-",
            self.msg.sender or "<>",
            len(self.msg.recipients),
            self.spool.size if self.spool is not None else 0,
            "yes" if self.msg.authenticated else "no",
            outcome.label,
            outcome.verdict.dsn,
            outcome.reason,
            elapsed,
        )

    def _reset(self) -> None:
        self.in_body = False
        self.failed = ""
        if self.spool is not None:
            self.spool.close()
            self.spool = None


def _bare(address: str) -> str:
    return address.strip().removeprefix("<").removesuffix(">").lower()
