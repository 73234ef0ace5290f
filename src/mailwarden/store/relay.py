"""Relay networks: clients that may relay without SMTP AUTH (table ``relay_networks``).

Who calls it: ``mailwarden relay`` (add, list, remove, purge) and the policy daemon
(``active_networks``, matched with ``core.relaynet.matches``).

An entry is permanent (``expires_at`` NULL) or temporary, POP-before-SMTP style: it is
active while ``expires_at > now`` and ignored afterwards until ``purge`` deletes it.
``network`` holds the canonical form from ``core.relaynet.parse_network``. ``source`` says
who made the entry: ``admin`` (``relay add``) or ``pop-before-smtp`` (``allow_login``,
after a POP3/IMAP login; schema 0009).

Errors: ``Conflict`` when an active entry for the network exists (an expired one, or
one a login made, is replaced), ``NotFound`` when removing an entry that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailwarden.errors import NotFound
from mailwarden.store.db import Tx

_COLUMNS = "network, expires_at, note, created_at, source"
ADMIN, LOGIN = "admin", "pop-before-smtp"


@dataclass(frozen=True, slots=True)
class RelayNetwork:
    network: str
    expires_at: int | None
    note: str
    created_at: int
    source: str = ADMIN

    def expired(self, now: int) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def add(tx: Tx, network: str, *, now: int, expires_at: int | None = None, note: str = "") -> None:
    """Insert ``network`` (already canonical); an expired entry of that name, or one a
    login made (``allow_login``), is replaced."""
    tx.execute(
        "DELETE FROM relay_networks WHERE network = ? AND (source = ? OR "
        "(expires_at IS NOT NULL AND expires_at <= ?))",
        (network, LOGIN, now),
    )
    tx.insert(
        "INSERT INTO relay_networks (network, expires_at, note, created_at) VALUES (?, ?, ?, ?)",
        (network, expires_at, note, now),
        conflict=f"relay network {network!r} already exists",
    )


def get(tx: Tx, network: str) -> RelayNetwork | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM relay_networks WHERE network = ?", (network,))
    return None if row is None else _network(row)


def list_networks(tx: Tx, now: int, *, include_expired: bool = False) -> list[RelayNetwork]:
    """All entries by network; expired ones only with ``include_expired``."""
    if include_expired:
        rows = tx.all(f"SELECT {_COLUMNS} FROM relay_networks ORDER BY network")
    else:
        rows = tx.all(
            f"SELECT {_COLUMNS} FROM relay_networks "
            "WHERE expires_at IS NULL OR expires_at > ? ORDER BY network",
            (now,),
        )
    return [_network(r) for r in rows]


def active_networks(tx: Tx, now: int) -> list[str]:
    """The networks that may relay at ``now`` (for ``core.relaynet.matches``)."""
    return [n.network for n in list_networks(tx, now)]


def remove(tx: Tx, network: str) -> None:
    if not tx.execute("DELETE FROM relay_networks WHERE network = ?", (network,)):
        raise NotFound(f"relay network {network!r} does not exist")


def allow_login(tx: Tx, host: str, *, now: int, expires_at: int) -> str:
    """Let ``host`` (one canonical address) relay until ``expires_at`` after a login.

    A new entry is marked ``pop-before-smtp``; one of that source is extended (never
    shortened); an active entry the admin made is left as it is. Expired login entries
    are deleted on the way (the table cleans itself). Returns ``added``, ``extended``
    or ``kept``.
    """
    tx.execute(
        "DELETE FROM relay_networks WHERE source = ? AND expires_at IS NOT NULL "
        "AND expires_at <= ?",
        (LOGIN, now),
    )
    entry = get(tx, host)
    if entry is not None and not entry.expired(now):
        if entry.source != LOGIN:
            return "kept"
        tx.execute(
            "UPDATE relay_networks SET expires_at = ? WHERE network = ? AND expires_at < ?",
            (expires_at, host, expires_at),
        )
        return "extended"
    tx.execute("DELETE FROM relay_networks WHERE network = ?", (host,))  # an expired one
    tx.insert(
        "INSERT INTO relay_networks (network, expires_at, note, created_at, source)"
        " VALUES (?, ?, ?, ?, ?)",
        (host, expires_at, "", now, LOGIN),
        conflict=f"relay network {host!r} already exists",
    )
    return "added"


def purge(tx: Tx, now: int) -> int:
    """Delete expired entries; return how many."""
    return tx.execute(
        "DELETE FROM relay_networks WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
    )


def _network(row: dict[str, Any]) -> RelayNetwork:
    expires = row["expires_at"]
    return RelayNetwork(
        str(row["network"]),
        None if expires is None else int(expires),
        str(row["note"]),
        int(row["created_at"]),
        str(row["source"]),
    )
