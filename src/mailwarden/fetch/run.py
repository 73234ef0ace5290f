"""One run of one fetch account: lock, log in, fetch what is new, submit, record, delete.

Who calls it: ``admin.fetch`` (``mailwarden fetch run``, in the foreground) and
``fetch.daemon`` (its workers). Both go through ``run_account``, so the rules are the same:

1. A per-account lock (``flock`` on ``<[fetch] state_dir>/account-N.lock``): two runs of
   one account never overlap, whether from the daemon or the command line; a run that
   finds the lock taken returns ``busy`` at once. A killed run's lock goes with its process.
2. Nothing fetched twice: each message is recorded as seen (``store.fetch.mark_seen``, its
   own transaction) right after the local MTA answered 250, before the next message. A
   run killed between the 250 and that commit (a few milliseconds) would fetch that one
   message again: the only window, measured in docs/fetch.md.
3. Nothing deleted on the server before the MTA confirmed: with ``keep`` off, a message is
   marked for deletion only once its seen entry is committed, and POP3/IMAP apply the
   deletions at the end of the session; a session that drops deletes nothing, and the next
   run deletes what was delivered (``plan.to_delete``).
4. A temporary local failure (4xx, MTA down) stops the run: the message and the rest stay on
   the server, unrecorded, for the next run (result ``deferred``). A permanent refusal (5xx)
   is recorded as ``refused``: kept on the server, never retried, counted and logged.
5. IMAP renumbering (a new UIDVALIDITY): messages already seen are recognised by digest
   (``plan.rematch``) and recorded under their new UIDs instead of being fetched again.

Logs one line per message (account id, mailbox, remote reference, size, outcome) and one
per run; never a password.

Errors: none raised for a remote, local or database failure during the exchange: each
is the run's ``error`` (one line), the session is dropped without deleting anything, and
what was recorded stays recorded. A ``StoreError`` while writing the run's summary
(``record_run``) propagates: the CLI prints it, the daemon logs it and retries.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailwarden.config import FetchSettings
from mailwarden.errors import ConfigError
from mailwarden.fetch import plan, secret
from mailwarden.fetch.remote import RemoteError, Session, connect, describe
from mailwarden.fetch.submit import Submitter
from mailwarden.store import fetch as store
from mailwarden.store.db import Database
from mailwarden.store.fetch import Account

log = logging.getLogger("mailwarden.fetch")

OK, ERROR, DEFERRED, BUSY = "ok", "error", "deferred", "busy"


@dataclass
class RunResult:
    account: int
    result: str = OK  # ok | error | deferred | busy
    delivered: int = 0
    refused: int = 0
    deferred: int = 0
    deleted: int = 0
    rematched: int = 0
    bytes: int = 0
    error: str | None = None
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)  # outcomes, in order (for metrics)

    def record(self) -> dict[str, object]:
        return {
            "account": self.account,
            "result": self.result,
            "delivered": self.delivered,
            "refused": self.refused,
            "deferred": self.deferred,
            "deleted": self.deleted,
            "rematched": self.rematched,
            "bytes": self.bytes,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


def lock_path(settings: FetchSettings, account_id: int) -> str:
    return os.path.join(settings.state_dir, f"account-{account_id}.lock")


def try_lock(settings: FetchSettings, account_id: int) -> int | None:
    """An open fd holding the account's lock, or None when another run holds it."""
    os.makedirs(settings.state_dir, mode=0o750, exist_ok=True)
    fd = os.open(lock_path(settings, account_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


Connect = Callable[[Account, str, float], Session]


def run_account(
    db: Database,
    account: Account,
    settings: FetchSettings,
    *,
    connector: Connect = connect,
    clock: Callable[[], float] = time.time,
) -> RunResult:
    """Run ``account`` once (see the module doc)."""
    result = RunResult(account.id)
    started = time.monotonic()
    fd = try_lock(settings, account.id)
    if fd is None:
        result.result = BUSY
        log.info("fetch: account %d (%s): already running; skipped", account.id, account.mailbox)
        return result
    try:
        _run_locked(db, account, settings, connector, clock=clock, result=result)
    finally:
        os.close(fd)
        result.seconds = time.monotonic() - started
    with db.transaction() as tx:
        store.record_run(
            tx,
            account.id,
            now=int(clock()),
            result=result.result,
            error=result.error,
            fetched=result.delivered,
        )
    log.info(
        "fetch: account %d (%s): %s, %d delivered, %d refused, %d deleted%s, %.1f s%s",
        account.id,
        account.mailbox,
        result.result,
        result.delivered,
        result.refused,
        result.deleted,
        f", {result.rematched} recognised after renumbering" if result.rematched else "",
        result.seconds,
        f": {result.error}" if result.error else "",
    )
    return result


def _run_locked(
    db: Database,
    account: Account,
    settings: FetchSettings,
    connector: Connect,
    *,
    clock: Callable[[], float],
    result: RunResult,
) -> None:
    try:
        password = secret.decrypt(
            secret.load_key(settings.key_file),
            account.password_enc,
            f"the password of fetch account {account.id}",
        )
        session = connector(account, password, settings.timeout)
    except (RemoteError, ConfigError) as exc:
        result.result, result.error = ERROR, str(exc)
        return
    host, port = _smtp_address(settings.smtp)
    submitter = Submitter(host, port, timeout=settings.timeout)
    try:
        _AccountRun(db, account, session, submitter, clock, result).exchange()
        session.close()
    except Exception as exc:  # noqa: BLE001 - remote/protocol failure: the run failed, mail is safe
        session.abort()
        result.result, result.error = ERROR, describe(exc, account)
    finally:
        submitter.close()


@dataclass
class _AccountRun:
    db: Database
    account: Account
    session: Session
    submitter: Submitter
    clock: Callable[[], float]
    result: RunResult

    def exchange(self) -> None:
        account, session = self.account, self.session
        listed = session.listing()
        with self.db.transaction(write=False) as tx:
            seen = store.seen(tx, account.id)
        if account.protocol == "imap" and plan.renumbered(listed, seen, session.uidvalidity):
            seen = self.rematch(listed, seen)
        earlier = plan.to_delete(listed, seen, account.keep)
        for message in plan.to_fetch(listed, seen):
            if not self.one(message):
                break
        for message in earlier:
            session.delete(message.ref)
            self.result.deleted += 1
        with self.db.transaction() as tx:
            store.forget(tx, account.id, plan.to_forget(listed, seen))

    def rematch(
        self, listed: list[plan.Listed], seen: dict[str, tuple[str, str]]
    ) -> dict[str, tuple[str, str]]:
        account = self.account
        headers = self.session.headers([m.ref for m in listed])
        candidates = [(m, plan.digest(headers[m.ref], m.size)) for m in listed if m.ref in headers]
        matched = plan.rematch(candidates, seen)
        with self.db.transaction() as tx:
            for message, digest, state in matched:
                store.mark_seen(
                    tx, account.id, message.key, digest=digest, state=state, now=int(self.clock())
                )
        log.warning(
            "fetch: account %d (%s): the server renumbered %s (UIDVALIDITY %d); %d of %d "
            "messages recognised as fetched before",
            account.id,
            account.mailbox,
            account.folder,
            self.session.uidvalidity,
            len(matched),
            len(listed),
        )
        self.result.rematched = len(matched)
        with self.db.transaction(write=False) as tx:
            return store.seen(tx, account.id)

    def one(self, message: plan.Listed) -> bool:
        """Fetch, submit and record one message; False to stop the run (temporary failure)."""
        account, result = self.account, self.result
        raw = self.session.retrieve(message.ref)
        if raw is None:
            return True  # gone from the server since the listing
        header = plan.header_block(raw)
        trace = plan.trace_headers(
            protocol=account.protocol,
            tls=account.tls,
            host=account.host,
            port=account.port,
            username=account.username,
            folder=account.folder,
            mailbox=account.mailbox,
            now=self.clock(),
        )
        sender = plan.envelope_sender(header)
        digest = plan.digest(header, message.size)
        outcome, reply = self.submitter.submit(trace + raw, sender, account.mailbox)
        if outcome != plan.TEMPORARY:  # record first: this is the window a kill can hit
            with self.db.transaction() as tx:
                store.mark_seen(
                    tx, account.id, message.key, digest=digest, state=outcome, now=int(self.clock())
                )
        result.messages.append(outcome)
        log.info(
            "fetch: account %d (%s): %s %s, %d bytes: %s (%s)",
            account.id,
            account.mailbox,
            account.protocol,
            message.ref,
            len(raw),
            outcome,
            reply,
        )
        if outcome == plan.TEMPORARY:
            result.deferred += 1
            result.result, result.error = DEFERRED, f"local delivery deferred: {reply}"
            return False
        if outcome == plan.REFUSED:
            result.refused += 1
            return True
        result.delivered += 1
        result.bytes += len(raw)
        if not account.keep:
            self.session.delete(message.ref)
            result.deleted += 1
        return True


def _smtp_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)
