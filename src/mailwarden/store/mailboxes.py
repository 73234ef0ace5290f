"""Mailboxes: the accounts that store mail, log in over IMAP/POP3 and send with SMTP AUTH.

A mailbox row holds the normalised address, the password hash with its Dovecot scheme
prefix (never returned by this module's readers), the Maildir path relative to the mail
root, quota (bytes and messages, 0 = unlimited), group, services bitfield (1 mail,
2 calendar, 4 contacts; 7 = all), whether forwarding keeps a copy, and the active flag.

Rules ``add`` enforces: the domain is local (callers get it from
``domains.require_local``), the domain's ``max_mailboxes`` (0 = unlimited), and no alias
with the same source (an address is a mailbox or an alias, never both).

Who calls it: ``admin/user.py``, ``admin/forward.py``; policyd and the LDA use ``get``
to find a recipient's Maildir, quota and state.

Errors: ``NotFound`` "unknown mailbox 'x'"; ``Conflict`` "mailbox x already exists",
"x is an alias; ..."; ``UsageError`` for a domain at its limit or an unknown service name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailwarden.errors import Conflict, NotFound, UsageError
from mailwarden.store import domains, lists
from mailwarden.store.db import Row, Tx

SERVICES = {"mail": 1, "calendar": 2, "contacts": 4}
ALL_SERVICES = 7

# Columns ``update`` may change; the names are constants, never caller text.
SETTABLE = ("name", "quota_bytes", "quota_messages", "group_id", "services", "active")

_SELECT = (
    "SELECT m.id, m.address, m.local_part, m.domain_id, d.name AS domain, m.name, m.maildir,"
    " m.quota_bytes, m.quota_messages, g.name AS mail_group, m.services, m.forward_keep_copy,"
    " m.active, m.last_login, m.created_at"
    " FROM mailboxes m JOIN domains d ON d.id = m.domain_id"
    " JOIN mail_groups g ON g.id = m.group_id"
)


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: int
    address: str
    local_part: str
    domain_id: int
    domain: str
    name: str
    maildir: str  # relative to the mail root, ends with '/'
    quota_bytes: int
    quota_messages: int
    group: str
    services: int
    forward_keep_copy: bool
    active: bool
    last_login: int | None
    created_at: int


@dataclass(frozen=True, slots=True)
class NewMailbox:
    """What ``add`` needs; ``password_hash`` is already hashed (``passwords.hash_password``)."""

    local_part: str
    password_hash: str
    maildir: str
    name: str = ""
    quota_bytes: int = 0
    quota_messages: int = 0
    group_id: int = 1
    services: int = ALL_SERVICES
    active: bool = True


@dataclass(frozen=True, slots=True)
class Usage:
    """Last known quota usage, as the LDA records it in ``quota_usage``."""

    bytes: int
    messages: int
    updated_at: int


def parse_services(text: str) -> int:
    """``"mail,calendar"`` -> 3; ``"all"`` -> 7."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return ALL_SERVICES
    bits = 0
    for name in names:
        if name not in SERVICES:
            raise UsageError(
                f"unknown service {name!r}: use {', '.join(SERVICES)} (comma-separated) or all"
            )
        bits |= SERVICES[name]
    if not names:
        raise UsageError("no services given: use mail, calendar, contacts or all")
    return bits


def service_names(bits: int) -> list[str]:
    return [name for name, bit in SERVICES.items() if bits & bit]


def _mailbox(row: Row) -> Mailbox:
    return Mailbox(
        id=int(row["id"]),
        address=row["address"],
        local_part=row["local_part"],
        domain_id=int(row["domain_id"]),
        domain=row["domain"],
        name=row["name"],
        maildir=row["maildir"],
        quota_bytes=int(row["quota_bytes"]),
        quota_messages=int(row["quota_messages"]),
        group=row["mail_group"],
        services=int(row["services"]),
        forward_keep_copy=bool(row["forward_keep_copy"]),
        active=bool(row["active"]),
        last_login=None if row["last_login"] is None else int(row["last_login"]),
        created_at=int(row["created_at"]),
    )


def get(tx: Tx, address: str) -> Mailbox | None:
    """The mailbox with this (normalised) address, active or not, or None."""
    row = tx.one(_SELECT + " WHERE m.address = ?", (address,))
    return None if row is None else _mailbox(row)


def require(tx: Tx, address: str) -> Mailbox:
    mailbox = get(tx, address)
    if mailbox is None:
        raise NotFound(f"unknown mailbox {address!r}")
    return mailbox


def exists(tx: Tx, address: str) -> bool:
    return tx.scalar("SELECT 1 FROM mailboxes WHERE address = ?", (address,)) is not None


def count(tx: Tx, domain_id: int) -> int:
    return int(tx.scalar("SELECT COUNT(*) FROM mailboxes WHERE domain_id = ?", (domain_id,)) or 0)


def add(tx: Tx, domain: domains.Domain, new: NewMailbox) -> Mailbox:
    """Create a mailbox in the local ``domain``, enforcing its limit."""
    address = f"{new.local_part}@{domain.name}"
    if not domain.is_local:
        raise UsageError(f"{domain.name} is not a local domain; mailboxes need a local domain")
    domains.lock(tx, domain.id)
    if tx.scalar("SELECT 1 FROM aliases WHERE source = ?", (address,)) is not None:
        raise Conflict(f"{address} is an alias; remove it first or use forward")
    lists.refuse_list(tx, address)
    if exists(tx, address):
        raise Conflict(f"mailbox {address} already exists")
    if domain.max_mailboxes and count(tx, domain.id) >= domain.max_mailboxes:
        raise UsageError(
            f"domain {domain.name} has reached its limit of {domain.max_mailboxes} "
            + ("mailbox" if domain.max_mailboxes == 1 else "mailboxes")
        )
    tx.insert(
        "INSERT INTO mailboxes (domain_id, local_part, address, password, name, maildir,"
        " quota_bytes, quota_messages, group_id, services, active, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            domain.id,
            new.local_part,
            address,
            new.password_hash,
            new.name,
            new.maildir,
            new.quota_bytes,
            new.quota_messages,
            new.group_id,
            new.services,
            int(new.active),
            int(time.time()),
        ),
        conflict=f"mailbox {address} already exists (or its maildir {new.maildir} is taken)",
    )
    return require(tx, address)


def update(tx: Tx, mailbox_id: int, changes: Mapping[str, Any]) -> None:
    """Change the given ``SETTABLE`` columns of one mailbox."""
    if not changes:
        return
    unknown = set(changes) - set(SETTABLE)
    if unknown:
        raise ValueError(f"mailbox columns that cannot be set: {sorted(unknown)}")
    assignments = ", ".join(f"{column} = ?" for column in changes)
    tx.execute(
        f"UPDATE mailboxes SET {assignments} WHERE id = ?",
        (*changes.values(), mailbox_id),
    )


def set_password(tx: Tx, mailbox_id: int, password_hash: str) -> None:
    tx.execute("UPDATE mailboxes SET password = ? WHERE id = ?", (password_hash, mailbox_id))


def set_keep_copy(tx: Tx, mailbox_id: int, keep_copy: bool) -> None:
    tx.execute(
        "UPDATE mailboxes SET forward_keep_copy = ? WHERE id = ?", (int(keep_copy), mailbox_id)
    )


def remove(tx: Tx, mailbox_id: int) -> None:
    """Delete the row (its forwards, grants and settings go with it; the Maildir stays),
    and its usage: ``quota_usage`` (also where foreign keys are not enforced) and the
    copy Dovecot's quota_clone keeps under the address (``dovecot_quota``), so a mailbox
    created later under the same address starts without the old numbers."""
    tx.execute(
        "DELETE FROM dovecot_quota WHERE username = (SELECT address FROM mailboxes WHERE id = ?)",
        (mailbox_id,),
    )
    tx.execute("DELETE FROM quota_usage WHERE mailbox_id = ?", (mailbox_id,))
    tx.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))


def usage(tx: Tx, mailbox_id: int) -> Usage | None:
    row = tx.one(
        "SELECT bytes, messages, updated_at FROM quota_usage WHERE mailbox_id = ?", (mailbox_id,)
    )
    if row is None:
        return None
    return Usage(int(row["bytes"]), int(row["messages"]), int(row["updated_at"]))


def list_all(tx: Tx, domain_id: int | None = None) -> list[Row]:
    """Mailboxes (optionally of one domain) ordered by domain and local part."""
    where, params = ("WHERE m.domain_id = ?", (domain_id,)) if domain_id is not None else ("", ())
    rows = tx.all(
        "SELECT m.address, m.name, m.quota_bytes, m.quota_messages, g.name AS mail_group,"
        " m.services, m.active, m.last_login"
        " FROM mailboxes m JOIN domains d ON d.id = m.domain_id"
        f" JOIN mail_groups g ON g.id = m.group_id {where}"
        " ORDER BY d.name, m.local_part",
        params,
    )
    return [
        {
            "address": r["address"],
            "name": r["name"],
            "quota_bytes": int(r["quota_bytes"]),
            "quota_messages": int(r["quota_messages"]),
            "group": r["mail_group"],
            "services": service_names(int(r["services"])),
            "active": bool(r["active"]),
            "last_login": None if r["last_login"] is None else int(r["last_login"]),
        }
        for r in rows
    ]


def mark_first_login(tx: Tx, mailbox_id: int, now: int) -> bool:
    """Record the first login (``provisioned_at``, and ``last_login`` when unset): True
    if this call did it, False if an earlier login had (schema 0010)."""
    changed = tx.execute(
        "UPDATE mailboxes SET provisioned_at = ?, last_login = COALESCE(last_login, ?)"
        " WHERE id = ? AND provisioned_at IS NULL",
        (now, now, mailbox_id),
    )
    return changed == 1
