"""Mailing lists: the ``mailing_lists``, ``list_owners`` and ``list_members`` tables.

A list is an address in a local domain (``list@domain``) run by mlmmj; mailwarden keeps
mlmmj's list directory in step with these rows (``mailwarden.lists.mlmmj``, called by
``ops/lists.py``). Members who subscribe or unsubscribe by mail change mlmmj's files
first; ``replace_members`` mirrors them back here.

``address_taken`` is the one question aliases, mailboxes and lists all ask before they
claim an address: a list address is never also a mailbox or an alias, and the other way
round.

Who calls it: ``ops/lists.py``; ``store/mailboxes.py`` and ``store/aliases.py``
(``refuse_taken``); ``store/policy.py`` (``is_list``: a list is a valid recipient).

Errors: ``NotFound`` "unknown list 'x'"; ``Conflict`` when the address is taken.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mailwarden.errors import Conflict, NotFound
from mailwarden.store.db import Tx

MODES = ("normal", "digest", "nomail")


@dataclass(frozen=True, slots=True)
class MailingList:
    id: int
    address: str
    local_part: str
    domain: str
    moderated: bool
    subscribers_only: bool
    created_at: int


@dataclass(frozen=True, slots=True)
class Member:
    address: str
    mode: str  # one of MODES
    moderator: bool


def address_taken(tx: Tx, address: str) -> str | None:
    """What already uses ``address``: ``mailbox``, ``alias``, ``list``, or None."""
    if tx.scalar("SELECT 1 FROM mailboxes WHERE address = ?", (address,)) is not None:
        return "mailbox"
    if tx.scalar("SELECT 1 FROM aliases WHERE source = ?", (address,)) is not None:
        return "alias"
    if is_list(tx, address, active_only=False):
        return "list"
    return None


def refuse_list(tx: Tx, address: str) -> None:
    """``Conflict`` when ``address`` is a mailing list (for new mailboxes and aliases)."""
    if is_list(tx, address, active_only=False):
        raise Conflict(f"{address} is a mailing list; remove it first (mailwarden list remove)")


def is_list(tx: Tx, address: str, *, active_only: bool = True) -> bool:
    sql = "SELECT 1 FROM mailing_lists WHERE address = ?"
    if active_only:
        sql += " AND active = 1"
    return tx.scalar(sql, (address,)) is not None


def _row(row: Mapping[str, Any]) -> MailingList:
    return MailingList(
        id=int(row["id"]),
        address=str(row["address"]),
        local_part=str(row["local_part"]),
        domain=str(row["domain"]),
        moderated=bool(row["moderated"]),
        subscribers_only=bool(row["subscribers_only"]),
        created_at=int(row["created_at"]),
    )


_SELECT = (
    "SELECT l.id, l.address, l.local_part, d.name AS domain, l.moderated,"
    " l.subscribers_only, l.created_at FROM mailing_lists l JOIN domains d ON d.id = l.domain_id"
)


def get(tx: Tx, address: str) -> MailingList | None:
    row = tx.one(_SELECT + " WHERE l.address = ?", (address,))
    return None if row is None else _row(row)


def require(tx: Tx, address: str) -> MailingList:
    found = get(tx, address)
    if found is None:
        raise NotFound(f"unknown list {address!r}")
    return found


def all_lists(tx: Tx, domain: str | None = None) -> list[MailingList]:
    if domain is None:
        rows = tx.all(_SELECT + " ORDER BY d.name, l.local_part")
    else:
        rows = tx.all(_SELECT + " WHERE d.name = ? ORDER BY l.local_part", (domain,))
    return [_row(r) for r in rows]


def add(
    tx: Tx,
    domain_id: int,
    local_part: str,
    address: str,
    *,
    moderated: bool,
    subscribers_only: bool,
) -> MailingList:
    taken = address_taken(tx, address)
    if taken is not None:
        article = "an" if taken == "alias" else "a"
        raise Conflict(f"{address} is already taken by {article} {taken}")
    tx.insert(
        "INSERT INTO mailing_lists (domain_id, local_part, address, moderated,"
        " subscribers_only, active, created_at) VALUES (?, ?, ?, ?, ?, 1, ?)",
        (domain_id, local_part, address, int(moderated), int(subscribers_only), int(time.time())),
        conflict=f"list {address} already exists",
    )
    return require(tx, address)


def remove(tx: Tx, list_id: int) -> None:
    tx.execute("DELETE FROM list_members WHERE list_id = ?", (list_id,))
    tx.execute("DELETE FROM list_owners WHERE list_id = ?", (list_id,))
    tx.execute("DELETE FROM mailing_lists WHERE id = ?", (list_id,))


def set_flags(
    tx: Tx, list_id: int, *, moderated: bool | None = None, subscribers_only: bool | None = None
) -> None:
    if moderated is not None:
        tx.execute("UPDATE mailing_lists SET moderated = ? WHERE id = ?", (int(moderated), list_id))
    if subscribers_only is not None:
        tx.execute(
            "UPDATE mailing_lists SET subscribers_only = ? WHERE id = ?",
            (int(subscribers_only), list_id),
        )


def owners(tx: Tx, list_id: int) -> list[str]:
    rows = tx.all("SELECT address FROM list_owners WHERE list_id = ? ORDER BY id", (list_id,))
    return [str(r["address"]) for r in rows]


def set_owners(tx: Tx, list_id: int, addresses: Iterable[str]) -> None:
    tx.execute("DELETE FROM list_owners WHERE list_id = ?", (list_id,))
    for addr in dict.fromkeys(addresses):
        tx.insert("INSERT INTO list_owners (list_id, address) VALUES (?, ?)", (list_id, addr))


def members(tx: Tx, list_id: int) -> list[Member]:
    rows = tx.all(
        "SELECT address, mode, moderator FROM list_members WHERE list_id = ? ORDER BY address",
        (list_id,),
    )
    return [Member(str(r["address"]), str(r["mode"]), bool(r["moderator"])) for r in rows]


def member(tx: Tx, list_id: int, address: str) -> Member | None:
    row = tx.one(
        "SELECT address, mode, moderator FROM list_members WHERE list_id = ? AND address = ?",
        (list_id, address),
    )
    return (
        None
        if row is None
        else Member(str(row["address"]), str(row["mode"]), bool(row["moderator"]))
    )


def put_member(tx: Tx, list_id: int, new: Member) -> bool:
    """Add ``new`` or change its mode/moderator flag; True when it was added."""
    if member(tx, list_id, new.address) is not None:
        tx.execute(
            "UPDATE list_members SET mode = ?, moderator = ? WHERE list_id = ? AND address = ?",
            (new.mode, int(new.moderator), list_id, new.address),
        )
        return False
    tx.insert(
        "INSERT INTO list_members (list_id, address, mode, moderator, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (list_id, new.address, new.mode, int(new.moderator), int(time.time())),
    )
    return True


def delete_member(tx: Tx, list_id: int, address: str) -> bool:
    return (
        tx.execute("DELETE FROM list_members WHERE list_id = ? AND address = ?", (list_id, address))
        > 0
    )


def replace_members(tx: Tx, list_id: int, subscribed: Mapping[str, str]) -> tuple[int, int]:
    """Mirror mlmmj's subscriber files (address -> mode): add the missing, drop the gone,
    keep moderator flags; (added, removed)."""
    have = {m.address: m for m in members(tx, list_id)}
    added = removed = 0
    for addr, mode in subscribed.items():
        old = have.get(addr)
        if old is None or old.mode != mode:
            added += put_member(tx, list_id, Member(addr, mode, old.moderator if old else False))
    for addr in have.keys() - subscribed.keys():
        removed += delete_member(tx, list_id, addr)
    return added, removed
