"""Mail groups: which services the mailboxes of a group may use.

A group switches IMAP, POP3, SMTP AUTH and ManageSieve on or off for its mailboxes.
Dovecot's password query filters on the service (``%s``) through the ``dovecot_users``
view; Courier gets ``disableimap=1`` / ``disablepop3=1`` from ``courier_users``.
The group ``default`` (id 1) is created with the schema, allows everything, and is what
a mailbox gets when none is named; it cannot be removed.

Who calls it: ``admin/group.py`` and ``admin/user.py``.

Errors: ``UsageError`` for an invalid name; ``NotFound`` "unknown group 'x'";
``Conflict`` "group x already exists", "group x is used by N mailboxes",
"the default group cannot be removed".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailwarden.errors import Conflict, NotFound, UsageError
from mailwarden.store.db import Row, Tx

DEFAULT = "default"
SERVICES = ("imap", "pop3", "smtp", "sieve")

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SELECT = "SELECT id, name, imap, pop3, smtp, sieve FROM mail_groups"


@dataclass(frozen=True, slots=True)
class Group:
    id: int
    name: str
    imap: bool
    pop3: bool
    smtp: bool
    sieve: bool


def normalize_name(text: str) -> str:
    """Lower-case a group name and check it: letters, digits, ``.``, ``_``, ``-``."""
    name = text.strip().lower()
    if not _NAME.match(name):
        raise UsageError(
            f"invalid group name {text!r}: use up to 64 letters, digits, '.', '_' or '-'"
        )
    return name


def _group(row: Row) -> Group:
    return Group(
        id=int(row["id"]),
        name=row["name"],
        imap=bool(row["imap"]),
        pop3=bool(row["pop3"]),
        smtp=bool(row["smtp"]),
        sieve=bool(row["sieve"]),
    )


def get(tx: Tx, name: str) -> Group | None:
    row = tx.one(_SELECT + " WHERE name = ?", (name,))
    return None if row is None else _group(row)


def require(tx: Tx, name: str) -> Group:
    group = get(tx, name)
    if group is None:
        raise NotFound(f"unknown group {name!r}")
    return group


def add(
    tx: Tx,
    name: str,
    *,
    imap: bool = True,
    pop3: bool = True,
    smtp: bool = True,
    sieve: bool = True,
) -> Group:
    tx.insert(
        "INSERT INTO mail_groups (name, imap, pop3, smtp, sieve) VALUES (?, ?, ?, ?, ?)",
        (name, int(imap), int(pop3), int(smtp), int(sieve)),
        conflict=f"group {name} already exists",
    )
    return require(tx, name)


def members(tx: Tx, group_id: int) -> int:
    """How many mailboxes belong to the group."""
    return int(tx.scalar("SELECT COUNT(*) FROM mailboxes WHERE group_id = ?", (group_id,)) or 0)


def remove(tx: Tx, group: Group) -> None:
    """Delete an unused group other than ``default``."""
    if group.name == DEFAULT:
        raise Conflict("the default group cannot be removed")
    used = members(tx, group.id)
    if used:
        noun = "mailbox" if used == 1 else "mailboxes"
        raise Conflict(f"group {group.name} is used by {used} {noun}; move them first")
    tx.execute("DELETE FROM mail_groups WHERE id = ?", (group.id,))


def list_all(tx: Tx) -> list[Row]:
    rows = tx.all(
        "SELECT g.name, g.imap, g.pop3, g.smtp, g.sieve,"
        " (SELECT COUNT(*) FROM mailboxes m WHERE m.group_id = g.id) AS mailboxes"
        " FROM mail_groups g ORDER BY g.name"
    )
    for row in rows:
        for key in SERVICES:
            row[key] = bool(row[key])
        row["mailboxes"] = int(row["mailboxes"])
    return rows
