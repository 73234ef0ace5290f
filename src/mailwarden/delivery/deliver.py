"""The delivery core: one message to one recipient, shared by lmtpd and mailwarden-lda.

What it does (``Deliverer.deliver``), in order; the first refusal wins:

    1. parse the recipient, strip its ``+extension`` and find the mailbox (5.1.1 unknown,
       5.2.1 disabled or without the ``mail`` service: ``core.recipient.final_mailbox``;
       a local part that would escape the mail root never parses);
    2. refuse a loop: a ``Delivered-To`` already naming the mailbox (5.4.6);
    3. decide the spam treatment with the mailbox's effective settings
       (``core.spamtreat``, ``core.spamsettings``; ``discard`` ends here with 2.0.0);
    4. prepend ``Return-Path`` and ``Delivered-To`` (plus ``X-Mailwarden-Spam`` for
       ``tag``) to the raw bytes, which are never otherwise changed;
    5. open the Maildir (creating it and the Junk folder as needed, refusing symlinks),
       and under the Maildir's shared lock: read ``maildirsize``, refuse over quota
       (4.2.2 / 5.2.2), write the message durably, append the quota line;
    6. after the message is safe: update ``quota_usage`` (and a quota warning once per
       threshold crossing, written straight into the Maildir), then the vacation reply.
       Failures here are logged only: the message is delivered, a retry would duplicate.
    7. with ``[traffic] counter = "daemons"`` (``mailwarden.accounting``): count the
       message ``in`` for the mailbox's domain, once per message body and domain (lmtpd
       hands all recipients of one LMTP DATA the same ``Body``); a discarded spam counts too.

The store is a ``store.facts.DeliveryStore`` given to the constructor: ``store.sql.SqlStore``
in lmtpd and the pipe LDA, the in-memory ``tests.unit.fakestore.FakeStore`` in unit tests.
Anything unexpected before the message is safe (store down, bug) answers 4.3.0 and
writes nothing. ``check_recipient`` is step 1 plus a quota check for LMTP's RCPT.

One log line per recipient: ``deliver rcpt=<…> from=<…> dsn=… ms=… <text>``. Metrics go
to a ``Recorder`` (Prometheus counters in lmtpd, the counter file in pipe mode).

Options lmtpd uses for throughput (the pipe LDA and the tests keep the defaults):
``usage`` = ``delivery.usage.WriteBehindUsage`` (``quota_usage`` written behind, coalesced;
default: the store's ``record_usage``, one transaction per delivery), and ``recipient_ttl`` > 0: an
active mailbox found in the store is remembered that many seconds, so RCPT and DATA
(and the next messages) do not look it up again, nor its vacation while none is in
effect. Only active mailboxes are remembered: an unknown or disabled one is looked up
every time (a cached "unknown" would bounce mail for a mailbox just created). So within
the TTL a mailbox just disabled or deleted may still receive mail, and a changed quota
limit or a vacation just switched on takes effect after it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from mailwarden import accounting, address
from mailwarden.config import Settings
from mailwarden.core import quotacheck, spamtreat
from mailwarden.core import recipient as recipient_rules
from mailwarden.core.delivery import Usage, loop_verdict
from mailwarden.delivery import headers as hdr
from mailwarden.delivery import quota
from mailwarden.delivery.body import Body, Prefixed
from mailwarden.delivery.maildir import Maildir, MaildirError, Names, open_maildir, os_verdict
from mailwarden.delivery.submit import Submitter
from mailwarden.errors import UsageError
from mailwarden.store.facts import DeliveryStore, Recipient
from mailwarden.verdict import OK, Verdict, tempfail

log = logging.getLogger("mailwarden.lda")

# Verdict -> metric outcome label (the bounded set metrics.LdaMetrics documents).
_OUTCOME = {"5.1.1": "unknown", "4.2.2": "quota", "5.2.2": "quota", "5.4.6": "loop"}


RECIPIENT_CACHE_MAX = 10000


class UsageWriter(Protocol):
    def record(self, mailbox_id: int, usage: Usage, thresholds: Iterable[int]) -> int | None: ...


class Recorder(Protocol):
    def record(
        self,
        outcome: str,
        nbytes: int,
        seconds: float,
        *,
        junk: bool = False,
        quota: bool = False,
        vacation: str | None = None,
    ) -> None: ...


@dataclass
class _Result:
    verdict: Verdict
    outcome: str = ""
    nbytes: int = 0
    junk: bool = False
    vacation: str | None = None


def outcome_of(verdict: Verdict) -> str:
    if verdict.ok:
        return "delivered"
    return _OUTCOME.get(verdict.dsn, "tempfail" if verdict.temporary else "rejected")


def clean_sender(sender: str) -> str:
    """The envelope sender as it may appear in ``Return-Path`` (no brackets, no CR/LF)."""
    bare = sender.strip().removeprefix("<").removesuffix(">")
    return "".join(ch for ch in bare if ch.isprintable() and ch not in "<> ")


def to_lf(data: bytes) -> bytes:
    """CRLF line ends (LMTP/SMTP) to LF (what Postfix and Dovecot store on disk)."""
    return data.replace(b"\r\n", b"\n")


class Deliverer:
    """Delivers to Maildirs below ``settings.mail.root`` (one per process; thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        store: DeliveryStore,
        recorder: Recorder,
        submitter: Submitter | None = None,
        *,
        chown: bool = False,
        usage: UsageWriter | None = None,
        recipient_ttl: float = 0.0,
        traffic: accounting.TrafficSink | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.recorder = recorder
        self.submitter = submitter or Submitter(settings.lda)
        self.owner = (settings.mail.uid, settings.mail.gid) if chown else None
        self.names = Names()
        # where quota_usage goes: lmtpd's write-behind, else the store, one transaction each
        self.record_usage = usage.record if usage is not None else store.record_usage
        self.recipient_ttl = recipient_ttl
        self._recipients: dict[str, tuple[float, Recipient]] = {}
        self._no_vacation: dict[int, float] = {}  # mailbox id -> monotonic expiry
        # traffic "in" (accounting): lmtpd's write-behind, else one transaction per message
        counting = accounting.counts(settings.traffic.counter, "delivery")
        self.traffic = (traffic or accounting.TrafficNow(store)) if counting else None
        self._counted: weakref.WeakKeyDictionary[Body, set[str]] = weakref.WeakKeyDictionary()
        self._counted_lock = threading.Lock()

    # --- RCPT -------------------------------------------------------------------------

    def _resolve(self, recipient: str) -> tuple[Verdict, Recipient | None]:
        if self.recipient_ttl > 0:
            hit = self._recipients.get(recipient)
            if hit is not None and hit[0] > time.monotonic():
                return OK, hit[1]
        verdict, rcpt = self._lookup(recipient)
        if rcpt is not None and self.recipient_ttl > 0:
            if len(self._recipients) >= RECIPIENT_CACHE_MAX:
                self._recipients.clear()
            self._recipients[recipient] = (time.monotonic() + self.recipient_ttl, rcpt)
        return verdict, rcpt

    def _lookup(self, recipient: str) -> tuple[Verdict, Recipient | None]:
        try:
            addr = address.parse_address(
                recipient, delimiter=self.settings.mail.recipient_delimiter
            )
        except UsageError as exc:
            text = f"<{recipient}> Bad recipient address: {exc}"
            return Verdict(recipient_rules.UNKNOWN.dsn, text), None
        bare = address.strip_extension(addr, self.settings.mail.recipient_delimiter)
        rcpt = self.store.recipient(str(bare))
        verdict = recipient_rules.final_mailbox(
            found=rcpt is not None,
            active=rcpt is not None and rcpt.active,
            services=rcpt.services if rcpt is not None else 0,
        )
        if not verdict.ok:
            return recipient_rules.naming(verdict, recipient), None
        return OK, rcpt

    def remembered(self, recipient: str) -> bool:
        """True if ``recipient`` is a remembered active mailbox without a quota limit:
        its RCPT answer is OK with no store or Maildir read (lmtpd answers it at once,
        without a worker thread)."""
        hit = self._recipients.get(recipient)
        return (
            hit is not None
            and hit[0] > time.monotonic()
            and not (hit[1].quota_bytes or hit[1].quota_messages)
        )

    def remembered_mailboxes(self) -> dict[int, Recipient]:
        """The active mailboxes remembered now, by id (lmtpd's worker processes re-read
        their ``maildirsize`` before writing ``quota_usage``)."""
        return {rcpt.id: rcpt for _, rcpt in list(self._recipients.values())}

    def check_recipient(self, recipient: str) -> Verdict:
        """RCPT-time answer: unknown, disabled, or already full (never raises)."""
        try:
            verdict, rcpt = self._resolve(recipient)
            if rcpt is None or not (rcpt.quota_bytes or rcpt.quota_messages):
                return verdict
            with self._open(rcpt) as box, box.lock(shared=True):
                usage = quota.usage(box, rcpt.quota_bytes, rcpt.quota_messages)
            v = quotacheck.decide(usage.facts(0), tempfail=self.settings.mail.quota_full_tempfail)
            return v if v.ok else Verdict(v.dsn, f"<{recipient}> {v.text}")
        except MaildirError as exc:
            log.error("rcpt <%s>: %s", recipient, exc.verdict.text)
            return exc.verdict
        except Exception:
            log.exception("rcpt <%s>: unexpected error", recipient)
            return tempfail()

    # --- DATA -------------------------------------------------------------------------

    def deliver(
        self, sender: str, recipient: str, data: bytes | Body, *, original_recipient: str = ""
    ) -> Verdict:
        """Deliver ``data`` (raw bytes, LF or CRLF; or lmtpd's spooled ``Body``, LF
        already) to ``recipient``; the outcome. A ``Body`` is copied in chunks."""
        started = time.monotonic()
        try:
            body = data if isinstance(data, Body) else Body.of(to_lf(data))
            result = self._deliver(clean_sender(sender), recipient, body)
        except MaildirError as exc:
            result = _Result(exc.verdict)
        except Exception:
            log.exception("deliver rcpt=<%s>: unexpected error", recipient)
            result = _Result(tempfail())
        seconds = time.monotonic() - started
        v = result.verdict
        outcome = result.outcome or outcome_of(v)
        try:  # the outcome is final: a metrics failure must not turn it into a retry
            self.recorder.record(
                outcome,
                result.nbytes,
                seconds,
                junk=result.junk,
                quota=outcome == "quota",
                vacation=result.vacation,
            )
        except Exception:
            log.exception("deliver rcpt=<%s>: recording metrics failed", recipient)
        orig = f" orig=<{original_recipient}>" if original_recipient else ""
        log.info(
            "deliver rcpt=<%s>%s from=<%s> dsn=%s outcome=%s ms=%d %s",
            recipient,
            orig,
            clean_sender(sender),
            v.dsn,
            outcome,
            seconds * 1000,
            v.text,
        )
        return v

    def _deliver(self, sender: str, recipient: str, data: Body) -> _Result:
        verdict, rcpt = self._resolve(recipient)
        if rcpt is None:
            return _Result(verdict)
        headers = hdr.parse(data.head)
        loop = loop_verdict(headers.get_all("delivered-to"), rcpt.address)
        if not loop.ok:
            return _Result(loop)
        treatment = self._treatment(rcpt, headers)
        if treatment == spamtreat.DISCARD:
            self._count_in(data, rcpt)
            return _Result(Verdict("2.0.0", "Discarded as spam"), outcome="discarded")
        message = Prefixed(self._prefix(sender, rcpt, treatment, headers), data)
        result = self._write(rcpt, message, treatment == spamtreat.FOLDER)
        if result.verdict.ok:
            self._count_in(data, rcpt)
            if treatment == spamtreat.INBOX:
                result.vacation = self._vacation(rcpt, sender, headers, recipient)
        return result

    def _count_in(self, data: Body, rcpt: Recipient) -> None:
        """Traffic in for the mailbox's domain, once per body and domain; never raises."""
        if self.traffic is None:
            return
        try:
            with self._counted_lock:
                seen = self._counted.setdefault(data, set())
                if rcpt.domain in seen:
                    return
                seen.add(rcpt.domain)
            self.traffic.add(accounting.inbound(rcpt.domain, data.size, accounting.utc_day()))
        except Exception:
            log.exception("deliver rcpt=<%s>: delivered, but counting traffic failed", rcpt.address)

    def _treatment(self, rcpt: Recipient, headers: hdr.Headers) -> str:
        verdict = spamtreat.read_verdict(
            headers.get("x-spam-flag"), headers.get("x-spam-score"), headers.get("x-spam-status")
        )
        if verdict.flag is None and verdict.score is None:
            return spamtreat.INBOX  # not scanned: no need to read the settings
        settings = self.store.spam_layers(rcpt.address).effective()
        return spamtreat.treatment(verdict, settings)

    def _prefix(self, sender: str, rcpt: Recipient, treatment: str, headers: hdr.Headers) -> bytes:
        lines = [f"Return-Path: <{sender}>", f"Delivered-To: {rcpt.address}"]
        if treatment == spamtreat.TAG:
            score = headers.get("x-spam-score") or ""
            lines.append(f"X-Mailwarden-Spam: yes{' score=' + score if score else ''}")
        return ("\n".join(lines) + "\n").encode("utf-8")

    def _open(self, rcpt: Recipient) -> Maildir:
        try:
            path = address.maildir_path(self.settings.mail.root, rcpt.maildir)
        except UsageError as exc:
            raise MaildirError(
                Verdict("4.3.0", f"Unsafe Maildir path in the store: {exc}")
            ) from exc
        return open_maildir(self.settings.mail.root, path, self.owner)

    def _write(self, rcpt: Recipient, message: Prefixed, junk: bool) -> _Result:
        size = message.size
        with self._open(rcpt) as box:
            try:
                with box.lock(shared=True):
                    usage = quota.usage(box, rcpt.quota_bytes, rcpt.quota_messages, size)
                    v = quotacheck.decide(
                        usage.facts(size), tempfail=self.settings.mail.quota_full_tempfail
                    )
                    if not v.ok:
                        return _Result(Verdict(v.dsn, f"<{rcpt.address}> {v.text}"))
                    folder = box.folder(self.settings.mail.junk_folder) if junk else ""
                    box.deliver(message, self.names, folder)
                    self._count_in_maildirsize(rcpt, box, size)
            except OSError as exc:
                raise MaildirError(os_verdict(exc, box.path)) from exc
            after = Usage(
                usage.bytes + size, usage.messages + 1, usage.max_bytes, usage.max_messages
            )
            self._after_delivery(rcpt, box, after)
        text = f"Delivered to {self.settings.mail.junk_folder}" if junk else "Delivered"
        return _Result(
            Verdict("2.0.0", text), outcome="junk" if junk else "delivered", nbytes=size, junk=junk
        )

    @staticmethod
    def _count_in_maildirsize(rcpt: Recipient, box: Maildir, size: int) -> None:
        """Append to maildirsize; the message is already delivered, so never fail now.

        Answering 4xx here would make the MTA deliver the message a second time. A missed
        line only under-counts until the next recalculation (Maildir++ rules).
        """
        try:
            quota.append(box, size)
        except OSError as exc:
            log.error(
                "deliver rcpt=<%s>: delivered, but maildirsize not updated (%s); "
                "it is recalculated later",
                rcpt.address,
                exc.strerror or exc,
            )

    def _after_delivery(self, rcpt: Recipient, box: Maildir, usage: Usage) -> None:
        """Keep ``quota_usage`` current and warn at thresholds; never fails the delivery."""
        try:
            due = self.record_usage(rcpt.id, usage, self.settings.mail.quota_warning_percent)
            if due is not None:
                warning = self._warning(rcpt, usage, due)
                with box.lock(shared=True):
                    box.deliver(warning, self.names)
                    quota.append(box, len(warning))
                # The warning counts against the quota like any message: keep the table
                # equal to maildirsize. Its own size never triggers a second warning.
                after = replace(
                    usage, bytes=usage.bytes + len(warning), messages=usage.messages + 1
                )
                self.record_usage(rcpt.id, after, self.settings.mail.quota_warning_percent)
                log.info("quota warning rcpt=<%s> percent=%d", rcpt.address, due)
        except Exception:
            log.exception(
                "deliver rcpt=<%s>: delivered, but updating quota usage failed", rcpt.address
            )

    def _warning(self, rcpt: Recipient, usage: Usage, percent: int) -> bytes:
        sender = self.settings.mail.postmaster or f"postmaster@{rcpt.domain}"
        text = (
            f"Return-Path: <>\nDelivered-To: {rcpt.address}\nFrom: {sender}\n"
            f"To: {rcpt.address}\nSubject: Your mailbox is {percent}% full\n"
            f"Auto-Submitted: auto-generated\nContent-Type: text/plain; charset=utf-8\n\n"
            f"Your mailbox {rcpt.address} has reached {usage.percent()}% of its quota"
            f" ({usage.bytes} of {usage.max_bytes or 'unlimited'} bytes,"
            f" {usage.messages} of {usage.max_messages or 'unlimited'} messages).\n"
            "Please delete messages you no longer need, or new mail may not be delivered.\n"
        )
        return text.encode("utf-8")

    def _vacation(
        self, rcpt: Recipient, sender: str, headers: hdr.Headers, envelope_rcpt: str
    ) -> str | None:
        from mailwarden.delivery import vacation

        if self.recipient_ttl > 0 and self._no_vacation.get(rcpt.id, 0.0) > time.monotonic():
            return None
        try:
            result = vacation.respond(
                self.store, self.submitter, rcpt, sender, headers, envelope_rcpt=envelope_rcpt
            )
            if result is None and self.recipient_ttl > 0:  # none in effect: remember that
                if len(self._no_vacation) >= RECIPIENT_CACHE_MAX:
                    self._no_vacation.clear()
                self._no_vacation[rcpt.id] = time.monotonic() + self.recipient_ttl
            return result
        except Exception:
            log.exception("vacation rcpt=<%s>: delivered, but the reply failed", rcpt.address)
            return None
