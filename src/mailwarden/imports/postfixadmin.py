"""PostfixAdmin 3.x -> ``plan.Source``: ``mailwarden import postfixadmin DB-URL``.

Reads the database at ``DB-URL`` (mailwarden's URL forms, ``mysql://`` or
``sqlite:////path``) in one read-only transaction (``store.postfixadmin``) and maps:

- ``domain``: ``backupmx = 1`` -> a relay domain (its ``transport`` kept when it is
  ``transport:nexthop``); else a local domain with ``mailboxes``/``aliases`` as limits
  (0 = unlimited; PostfixAdmin's -1 "disabled" becomes 0 with a note) and ``maxquota``
  (MB per mailbox) as the default quota. The domain-wide ``quota`` has no equivalent (note).
- ``alias_domain`` -> alias domains.
- ``mailbox``: address, name, quota (bytes), active; the hash through ``hashes.classify``.
- ``alias``: the row of a mailbox's own address is its forwarding: the mailbox itself in
  ``goto`` means keep a copy, other targets become forwards, and a ``goto`` of only itself
  (the self-alias every mailbox has) gives nothing. Other rows become aliases (``@domain``
  is the catch-all). Vacation targets (``user#domain@autoreply...``) are dropped: the
  vacation itself is imported. Inactive aliases are skipped (note).
- ``vacation`` (active ones): subject, body, ``activefrom``/``activeuntil`` (read as UTC;
  PostfixAdmin's 2000-01-01 / 2038-01-18 defaults mean open-ended), ``interval_time``.

Who calls it: ``admin/imports.py``. Errors: ``ConfigError`` for a bad URL, ``StoreError``
when the database is not PostfixAdmin's.
"""

from __future__ import annotations

import calendar
from collections.abc import Collection
from datetime import datetime
from typing import Any

from mailwarden.errors import StoreError, StoreUnavailable
from mailwarden.imports import hashes
from mailwarden.imports import plan as p
from mailwarden.store import postfixadmin as pfa
from mailwarden.store.db import Database, Row

DEFAULT_MULTIPLIER = 1024000  # PostfixAdmin's $CONF['quota_multiplier']
_OPEN_FROM = 946684800  # 2000-01-01
_OPEN_UNTIL = 2147385600  # 2038-01-18


def read(
    url: str,
    *,
    only: Collection[str] = (),
    multiplier: int = DEFAULT_MULTIPLIER,
    cleartext: bool = False,
) -> p.Source:
    """The source rows of the PostfixAdmin database at ``url`` (``only``: these domains)."""
    db = Database(url, read_only=True)
    try:
        with db.read() as tx:
            rows = (
                pfa.domains(tx), pfa.alias_domains(tx), pfa.mailboxes(tx),
                pfa.aliases(tx), pfa.vacations(tx),
            )  # fmt: skip
    except StoreUnavailable:
        raise
    except StoreError as exc:
        raise StoreError(f"{db.url.masked} is not a PostfixAdmin 3.x database: {exc}") from None
    finally:
        db.close()
    return convert(*rows, only=only, multiplier=multiplier, cleartext=cleartext)


def convert(
    domains: list[Row],
    alias_domains: list[Row],
    mailboxes: list[Row],
    aliases: list[Row],
    vacations: list[Row],
    *,
    only: Collection[str] = (),
    multiplier: int = DEFAULT_MULTIPLIER,
    cleartext: bool = False,
) -> p.Source:
    """Rows as ``store.postfixadmin`` returns them -> ``plan.Source`` (pure)."""
    wanted = {d.lower() for d in only}

    def keep(domain: str) -> bool:
        return not wanted or domain.lower() in wanted

    src = p.Source()
    for row in domains:
        if keep(row["domain"]):
            src.domains.append(_domain(row, multiplier, src.notes))
    for row in alias_domains:
        if keep(row["alias_domain"]) or keep(row["target_domain"]):
            src.domains.append(
                p.Domain(
                    _lower(row["alias_domain"]), "alias",
                    alias_of=_lower(row["target_domain"]), active=bool(row["active"]),
                )
            )  # fmt: skip
    boxes = {_lower(r["username"]) for r in mailboxes if keep(r["domain"])}
    for row in mailboxes:
        if keep(row["domain"]):
            src.mailboxes.append(_mailbox(row, cleartext))
    for row in aliases:
        if keep(row["domain"]):
            _alias(row, boxes, src)
    for row in vacations:
        if keep(row["domain"]):
            _vacation(row, boxes, src)
    return src


def _lower(text: Any) -> str:
    return str(text).strip().lower()


def _limit(row: Row, column: str, notes: list[str]) -> int:
    value = int(row[column] or 0)
    if value < 0:
        notes.append(
            f"domain {row['domain']}: {column} = {value} (disabled) imported as 0 (unlimited)"
        )
        return 0
    return value


def _domain(row: Row, multiplier: int, notes: list[str]) -> p.Domain:
    name = _lower(row["domain"])
    active = bool(row["active"])
    if int(row["backupmx"] or 0):
        transport = str(row["transport"] or "")
        keep = ":" in transport and not transport.startswith("virtual")
        return p.Domain(name, "relay", transport=transport if keep else None, active=active)
    if int(row["quota"] or 0) > 0:
        notes.append(
            f"domain {name}: domain-wide quota {row['quota']} MB has no equivalent, not imported"
        )
    limits = {
        "max_mailboxes": _limit(row, "mailboxes", notes),
        "max_aliases": _limit(row, "aliases", notes),
        "default_quota_bytes": _limit(row, "maxquota", notes) * multiplier,
    }
    return p.Domain(name, "local", active=active, limits=limits)


def _mailbox(row: Row, cleartext: bool) -> p.Mailbox:
    quota = int(row["quota"] or 0)
    return p.Mailbox(
        address=_lower(row["username"]),
        password=hashes.classify(str(row["password"] or ""), cleartext=cleartext),
        name=str(row["name"] or ""),
        quota_bytes=max(quota, 0),
        active=bool(row["active"]),
        old_maildir=str(row["maildir"] or ""),
    )


def _targets(goto: str, address: str) -> list[str]:
    vacation_key = address.replace("@", "#", 1) + "@"
    found = []
    for part in goto.replace("\n", ",").split(","):
        dest = part.strip().lower()
        if dest and not dest.startswith(vacation_key) and dest not in found:
            found.append(dest)
    return found


def _alias(row: Row, boxes: set[str], src: p.Source) -> None:
    addr = _lower(row["address"])
    if not int(row["active"]):
        src.notes.append(f"alias {addr}: inactive, not imported")
        return
    targets = _targets(str(row["goto"] or ""), addr)
    if addr in boxes:
        others = tuple(t for t in targets if t != addr)
        if others:
            src.forwards.append(p.Forward(addr, others, keep_copy=addr in targets))
        return
    if targets:
        src.aliases.append(p.Alias(addr, tuple(targets)))


def _when(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        stamp = calendar.timegm(value.timetuple())
    else:
        try:
            stamp = calendar.timegm(datetime.fromisoformat(str(value)).timetuple())
        except ValueError:
            return None
    return stamp


def _vacation(row: Row, boxes: set[str], src: p.Source) -> None:
    addr = _lower(row["email"])
    if not int(row["active"]):
        src.notes.append(f"vacation of {addr}: inactive, not imported")
        return
    if addr not in boxes:
        src.notes.append(f"vacation of {addr}: no such mailbox, not imported")
        return
    starts, ends = _when(row["activefrom"]), _when(row["activeuntil"])
    src.vacations.append(
        p.Vacation(
            addr, str(row["subject"] or ""), str(row["body"] or ""),
            starts_at=None if starts is None or starts <= _OPEN_FROM else starts,
            ends_at=None if ends is None or ends >= _OPEN_UNTIL else ends,
            interval=int(row["interval_time"] or 0) or None,
        )
    )  # fmt: skip
