"""Keeping ``quota_usage`` current after a delivery (read by policyd at RCPT time).

``maildirsize`` in the Maildir is the authoritative usage; ``quota_usage`` is a copy in
the store so the policy daemon can refuse a full mailbox without touching mail storage,
plus ``warned_percent``, the quota-warning threshold last announced to the user.

Writers with one method, ``record(mailbox_id, usage, thresholds) -> due``: it stores
the usage after a delivery and returns the warning threshold newly crossed (the caller
then writes the warning message), or None.

The store itself (pipe mode, tests: ``DeliveryStore.record_usage``, ``store.facts``)
    One write transaction per delivery: read ``warned_percent``, decide, upsert the row.

``WriteBehindUsage`` (lmtpd)
    A write transaction per delivery (BEGIN IMMEDIATE, journal fsyncs, serialised across
    all sessions) cost more than the Maildir write itself, so lmtpd coalesces: the
    latest ``bytes``/``messages`` per mailbox wait in memory and a background thread
    writes them all in ONE transaction at most every ``interval`` seconds (0.5 s), and
    once more at shutdown. A change of the warning state (a threshold crossed, or usage
    back below it) is still written at once, before the warning message is delivered,
    so a crash can never make a warning go out twice. What a crash can lose is at most
    the last ``interval`` of usage numbers in ``quota_usage``; ``maildirsize`` has them,
    and the next delivery to the mailbox (or ``mailwarden quota recalc``) writes them.
    Consequences: policyd may see usage up to ``interval`` seconds old (it only
    pre-checks; the LDA enforces the quota against ``maildirsize``), and a failed flush
    (store down) keeps the numbers and retries on the next tick.

    ``warned_percent`` is remembered per mailbox while its row has unwritten numbers,
    and read again from the store after they are written, so ``mailwarden quota`` resets
    are seen within one interval; the background writer never writes
    ``warned_percent`` itself (``store.delivery.record_usage_only``), so it cannot undo
    one.

``FreshUsage`` (lmtpd)
    ``WriteBehindUsage`` that writes, for each pending mailbox, the numbers its
    ``maildirsize`` holds at write time rather than those computed at delivery time:
    two deliveries to one mailbox that finish out of order could otherwise leave the
    older numbers in ``quota_usage`` until the next delivery. ``lmtp_workers.SharedUsage``
    adds a lock across processes for ``lmtpd --workers``.

Threads: ``record`` is called from lmtpd's worker threads; everything shared is guarded
by one lock, and writes (flushes and warning-state changes) by a second one so they
reach the store in the order they were decided.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from mailwarden import address
from mailwarden.core.delivery import Usage, warning_due
from mailwarden.delivery import quota
from mailwarden.delivery.maildir import open_maildir
from mailwarden.errors import StoreUnavailable
from mailwarden.store import delivery as store
from mailwarden.store.db import Database

log = logging.getLogger("mailwarden.lda")

FLUSH_INTERVAL = 0.5

# The mailboxes lmtpd remembers (id -> where their Maildir is): FreshUsage reads their
# maildirsize when it writes.
Locate = Callable[[], dict[int, store.Recipient]]


class WriteBehindUsage:
    """Coalesced, periodic writes (see the module doc). ``start()`` the flusher thread,
    ``close()`` at shutdown (writes what is pending)."""

    def __init__(self, db: Database, interval: float = FLUSH_INTERVAL) -> None:
        self.db = db
        self.interval = interval
        self._lock = threading.Lock()  # _warned, _pending, _generation
        self._write_lock = threading.Lock()  # one store write at a time, in decision order
        self._warned: dict[int, int] = {}
        self._pending: dict[int, tuple[int, int, int]] = {}  # id -> (bytes, messages, at)
        self._generation = 0  # bumped whenever a remembered warned_percent is forgotten
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="quota-usage", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - kept pending, retried next tick
                log.warning("quota_usage: write-behind failed, will retry: %s", exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        except Exception:
            log.exception("quota_usage: final write failed (maildirsize has the numbers)")

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _warned_percent(self, mailbox_id: int) -> int:
        while True:
            with self._lock:
                known = self._warned.get(mailbox_id)
                generation = self._generation
            if known is not None:
                return known
            with self.db.read() as tx:
                stored = store.warned_percent(tx, mailbox_id)
            with self._lock:
                known = self._warned.get(mailbox_id)
                if known is not None:
                    return known
                if generation == self._generation:  # nothing forgotten meanwhile
                    self._warned[mailbox_id] = stored
                    return stored

    def record(self, mailbox_id: int, usage: Usage, thresholds: Iterable[int]) -> int | None:
        now = int(time.time())
        while True:
            self._warned_percent(mailbox_id)  # read (if need be) outside the lock
            with self._lock:
                warned = self._warned.get(mailbox_id)
                if warned is None:
                    continue  # forgotten by a flush meanwhile: read it again
                due, mark = warning_due(usage.percent(), warned, thresholds)
                if mark == warned:
                    self._pending[mailbox_id] = (usage.bytes, usage.messages, now)
                    return None
                # The warning state changes: claim it (a concurrent delivery will not
                # warn again) and write it now, superseding pending numbers of the mailbox.
                self._warned[mailbox_id] = mark
                self._pending.pop(mailbox_id, None)
                break
        try:
            with self._write_lock, self.db.transaction() as tx:
                store.record_usage(
                    tx, mailbox_id, usage.bytes, usage.messages, warned=mark, now=now
                )
        except BaseException:
            with self._lock:
                self._warned.pop(mailbox_id, None)  # read it again next time
                self._generation += 1
            raise
        return due

    def flush(self) -> int:
        """Write every pending row in one transaction; the number written."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                written = self._write(batch)
            except BaseException:
                with self._lock:  # keep them, unless newer numbers arrived meanwhile
                    for mailbox_id, row in batch.items():
                        self._pending.setdefault(mailbox_id, row)
                raise
            with self._lock:
                for mailbox_id in batch:
                    if mailbox_id not in self._pending:
                        self._warned.pop(mailbox_id, None)
                self._generation += 1
            return written

    def _write(self, batch: dict[int, tuple[int, int, int]]) -> int:
        try:
            with self.db.transaction() as tx:
                for mailbox_id, (nbytes, messages, at) in batch.items():
                    store.record_usage_only(tx, mailbox_id, nbytes, messages, now=at)
            return len(batch)
        except StoreUnavailable:
            raise
        except Exception:
            if len(batch) == 1:
                raise
        # One bad row (a mailbox deleted meanwhile) must not hold back the others.
        written = 0
        for mailbox_id, row in batch.items():
            try:
                written += self._write({mailbox_id: row})
            except StoreUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - that row is dropped
                log.warning("quota_usage: dropping mailbox id %d: %s", mailbox_id, exc)
        return written


class FreshUsage(WriteBehindUsage):
    """Write-behind whose rows follow ``maildirsize`` in time (see the module doc)."""

    def __init__(
        self, db: Database, mail_root: str, locate: Locate, interval: float = FLUSH_INTERVAL
    ) -> None:
        super().__init__(db, interval)
        self.mail_root = mail_root
        self.locate = locate

    def _write(self, batch: dict[int, tuple[int, int, int]]) -> int:
        mailboxes = self.locate()
        fresh = {i: self._current(mailboxes.get(i), row) for i, row in batch.items()}
        return super()._write(fresh)

    def _current(
        self, rcpt: store.Recipient | None, row: tuple[int, int, int]
    ) -> tuple[int, int, int]:
        """The mailbox's numbers in ``maildirsize`` now; ``row`` if they cannot be read
        (a mailbox no longer remembered: its newest delivery's numbers)."""
        if rcpt is None:
            return row
        try:
            path = address.maildir_path(self.mail_root, rcpt.maildir)
            with open_maildir(self.mail_root, path, None) as box:
                sf = quota.read(box)
        except Exception as exc:  # noqa: BLE001 - the numbers of the delivery do
            log.warning("quota_usage: cannot read maildirsize of %s: %s", rcpt.address, exc)
            return row
        if sf is None:
            return row
        return max(sf.bytes, 0), max(sf.messages, 0), int(time.time())
