"""The mail fetcher's tables: remote accounts (``fetch_accounts``) and what each has seen
(``fetch_seen``). Schema 0010; docs/fetch.md.

Who calls it: ``admin.fetch`` (add, list, show, remove) and ``fetch.run`` (one run of an
account: its seen set, one ``mark_seen`` per message right after the local MTA answered,
``record_run`` at the end); ``fetch.daemon`` asks ``due`` which accounts to run.

The remote password is stored encrypted (``password_enc``, made by ``fetch.secret``):
this module never sees it in clear and ``Account.record`` leaves it out.

Errors: ``Conflict`` "fetch account ... exists already"; ``NotFound`` "no fetch account
N"; whatever ``store.db`` raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mailwarden.errors import NotFound
from mailwarden.store.db import Row, Tx

PROTOCOLS = ("pop3", "imap")
TLS_MODES = ("tls", "starttls", "none")
STATES = ("delivered", "refused")

_SELECT = (
    "SELECT a.id, m.address AS mailbox, a.mailbox_id, a.protocol, a.host, a.port, a.tls,"
    " a.verify_cert, a.username, a.password_enc, a.folder, a.keep, a.interval_seconds,"
    " a.enabled, a.created_at, a.last_run_at, a.last_result, a.last_error, a.last_fetched"
    " FROM fetch_accounts a JOIN mailboxes m ON m.id = a.mailbox_id"
)


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    mailbox: str  # the local mailbox address the mail is delivered to
    mailbox_id: int
    protocol: str  # pop3 | imap
    host: str
    port: int
    tls: str  # tls | starttls | none
    verify_cert: bool
    username: str
    password_enc: str
    folder: str
    keep: bool
    interval: int  # seconds
    enabled: bool
    created_at: int
    last_run_at: int | None
    last_result: str | None
    last_error: str | None
    last_fetched: int

    def record(self) -> dict[str, Any]:
        """What ``list``/``show`` print: everything but the (encrypted) password."""
        return {
            "id": self.id,
            "mailbox": self.mailbox,
            "protocol": self.protocol,
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "verify_cert": self.verify_cert,
            "username": self.username,
            "folder": self.folder if self.protocol == "imap" else "",
            "keep": self.keep,
            "interval": self.interval,
            "enabled": self.enabled,
            "last_run_at": self.last_run_at,
            "last_result": self.last_result,
            "last_error": self.last_error,
            "last_fetched": self.last_fetched,
        }


def _account(row: Row) -> Account:
    return Account(
        id=int(row["id"]),
        mailbox=str(row["mailbox"]),
        mailbox_id=int(row["mailbox_id"]),
        protocol=str(row["protocol"]),
        host=str(row["host"]),
        port=int(row["port"]),
        tls=str(row["tls"]),
        verify_cert=bool(row["verify_cert"]),
        username=str(row["username"]),
        password_enc=str(row["password_enc"]),
        folder=str(row["folder"]),
        keep=bool(row["keep"]),
        interval=int(row["interval_seconds"]),
        enabled=bool(row["enabled"]),
        created_at=int(row["created_at"]),
        last_run_at=None if row["last_run_at"] is None else int(row["last_run_at"]),
        last_result=row["last_result"],
        last_error=row["last_error"],
        last_fetched=int(row["last_fetched"]),
    )


def add(
    tx: Tx,
    *,
    mailbox_id: int,
    protocol: str,
    host: str,
    port: int,
    tls: str,
    verify_cert: bool,
    username: str,
    password_enc: str,
    folder: str,
    keep: bool,
    interval: int,
    now: int,
) -> int:
    return tx.insert(
        "INSERT INTO fetch_accounts (mailbox_id, protocol, host, port, tls, verify_cert,"
        " username, password_enc, folder, keep, interval_seconds, enabled, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
        (
            mailbox_id,
            protocol,
            host,
            port,
            tls,
            int(verify_cert),
            username,
            password_enc,
            folder,
            int(keep),
            interval,
            now,
        ),
        conflict=f"fetch account {protocol}://{username}@{host}:{port} exists already "
        "for this mailbox",
    )


def get(tx: Tx, account_id: int) -> Account | None:
    row = tx.one(_SELECT + " WHERE a.id = ?", (account_id,))
    return None if row is None else _account(row)


def require(tx: Tx, account_id: int) -> Account:
    account = get(tx, account_id)
    if account is None:
        raise NotFound(f"no fetch account {account_id}")
    return account


def listing(tx: Tx, mailbox: str | None = None) -> list[Account]:
    """Every account (of one mailbox address), by id."""
    if mailbox is None:
        rows = tx.all(_SELECT + " ORDER BY a.id")
    else:
        rows = tx.all(_SELECT + " WHERE m.address = ? ORDER BY a.id", (mailbox,))
    return [_account(r) for r in rows]


def due(tx: Tx, now: int) -> list[Account]:
    """Enabled accounts of active mailboxes whose interval has passed since the last run."""
    rows = tx.all(
        _SELECT + " WHERE a.enabled = 1 AND m.active = 1"
        " AND (a.last_run_at IS NULL OR a.last_run_at + a.interval_seconds <= ?)"
        " ORDER BY a.last_run_at, a.id",
        (now,),
    )
    return [_account(r) for r in rows]


def remove(tx: Tx, account_id: int) -> None:
    if not tx.execute("DELETE FROM fetch_accounts WHERE id = ?", (account_id,)):
        raise NotFound(f"no fetch account {account_id}")


def record_run(
    tx: Tx, account_id: int, *, now: int, result: str, error: str | None, fetched: int
) -> None:
    tx.execute(
        "UPDATE fetch_accounts SET last_run_at = ?, last_result = ?, last_error = ?,"
        " last_fetched = ? WHERE id = ?",
        (now, result, None if error is None else error[:1000], fetched, account_id),
    )


def seen(tx: Tx, account_id: int) -> dict[str, tuple[str, str]]:
    """uid_key -> (digest, state) of every message the account has handled."""
    rows = tx.all(
        "SELECT uid_key, digest, state FROM fetch_seen WHERE account_id = ?", (account_id,)
    )
    return {str(r["uid_key"]): (str(r["digest"]), str(r["state"])) for r in rows}


def mark_seen(tx: Tx, account_id: int, uid_key: str, *, digest: str, state: str, now: int) -> None:
    """Record one message as handled (idempotent: a second mark replaces the first)."""
    tx.execute("DELETE FROM fetch_seen WHERE account_id = ? AND uid_key = ?", (account_id, uid_key))
    tx.execute(
        "INSERT INTO fetch_seen (account_id, uid_key, digest, state, at) VALUES (?, ?, ?, ?, ?)",
        (account_id, uid_key, digest, state, now),
    )


def forget(tx: Tx, account_id: int, uid_keys: Iterable[str]) -> int:
    """Drop the seen entries of messages no longer on the server."""
    count = 0
    for key in uid_keys:
        count += tx.execute(
            "DELETE FROM fetch_seen WHERE account_id = ? AND uid_key = ?", (account_id, key)
        )
    return count
