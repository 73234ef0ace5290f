"""Vacation (out-of-office) operations: set, off, show, list.

Rules: the mailbox exists; the subject is 1..255 characters without control characters
(it becomes a header); the body is UTF-8 text, not empty, without NUL, at most
``MAX_BODY`` bytes; ``until`` is after ``from``; the interval per sender is positive.
A vacation that already ended is stored with a note (no replies will be sent).
A mailbox user may set its own (``/me/vacation``); a domain admin those of its domains.

Who calls it: ``admin/vacation.py``, ``api/app``.
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mailwarden.errors import Forbidden, NotFound, UsageError
from mailwarden.ops.base import Actor, Env, change
from mailwarden.store import scopes, vacation
from mailwarden.store.db import Tx
from mailwarden.units import format_duration, format_iso

MAX_BODY = 65535  # bytes: what a MariaDB TEXT column holds
MAX_SUBJECT = 255
DEFAULT_INTERVAL = 7 * 86400


@dataclass(frozen=True, slots=True)
class Set:
    record: dict[str, Any]
    notes: list[str]


def check_subject(text: str) -> str:
    subject = text.strip()
    if not subject:
        raise UsageError("--subject is empty")
    if len(subject) > MAX_SUBJECT:
        raise UsageError(f"--subject is longer than {MAX_SUBJECT} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in subject):
        raise UsageError("--subject may not contain control characters (it becomes a header)")
    return subject


def check_body(body: str, where: str = "body") -> str:
    if len(body.encode("utf-8", "surrogateescape")) > MAX_BODY:
        raise UsageError(f"{where} is larger than {MAX_BODY} bytes (64 KiB)")
    if "\0" in body:
        raise UsageError(f"{where} contains NUL characters")
    if not body.strip():
        raise UsageError(f"{where} is empty")
    return body


def record(address: str, vac: vacation.Vacation, now: int, *, body: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "address": address,
        "active": vac.active,
        "in_effect": vac.in_effect(now),
        "from": format_iso(vac.starts_at),
        "until": format_iso(vac.ends_at),
        "interval": format_duration(vac.interval_seconds),
        "subject": vac.subject,
        "interval_seconds": vac.interval_seconds,
        "updated": format_iso(vac.updated_at),
    }
    if body:
        rec["body"] = vac.body
    return rec


def _mailbox(tx: Tx, actor: Actor, address: str) -> scopes.Mailbox:
    box = scopes.mailbox(tx, address)
    if not (actor.role == "user" and actor.mailbox == box.address):
        actor.require_sees(box.domain, f"mailbox {box.address!r} does not exist")
    return box


def set_vacation(
    env: Env,
    actor: Actor,
    address: str,
    *,
    subject: str,
    body: str,
    starts_at: int | None = None,
    ends_at: int | None = None,
    interval: int = DEFAULT_INTERVAL,
    body_name: str = "body",
) -> Set:
    subject = check_subject(subject)
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise UsageError("the end (--until) is not after the start (--from)")
    if interval <= 0:
        raise UsageError("invalid interval: must be longer than 0")
    body = check_body(body, body_name)
    now = int(time.time())
    with change(env, actor, "vacation.set", address, None, self_service=True) as ch:
        box = _mailbox(ch.tx, actor, address)
        ch.obj, ch.domain = box.address, box.domain
        old = vacation.get(ch.tx, box.id)
        ch.before = None if old is None else record(box.address, old, now, body=True)
        vacation.set_vacation(
            ch.tx,
            box.id,
            subject=subject,
            body=body,
            starts_at=starts_at,
            ends_at=ends_at,
            interval=interval,
            now=now,
        )
        new = vacation.get(ch.tx, box.id)
        assert new is not None
        ch.after = record(box.address, new, now, body=True)
    notes = []
    if ends_at is not None and ends_at <= now:
        notes.append(f"it ended already ({format_iso(ends_at)}), so no replies will be sent")
    return Set(ch.after, notes)


def off(env: Env, actor: Actor, address: str) -> tuple[str, bool]:
    """Switch the reply off; (address, whether it was on)."""
    now = int(time.time())
    with change(env, actor, "vacation.off", address, None, self_service=True) as ch:
        box = _mailbox(ch.tx, actor, address)
        ch.obj, ch.domain = box.address, box.domain
        old = vacation.get(ch.tx, box.id)
        ch.before = None if old is None else record(box.address, old, now, body=False)
        was_on = vacation.off(ch.tx, box.id, now)
        new = vacation.get(ch.tx, box.id)
        ch.after = None if new is None else record(box.address, new, now, body=False)
    return box.address, was_on


def show(env: Env, actor: Actor, address: str) -> dict[str, Any]:
    with env.db.read() as tx:
        box = _mailbox(tx, actor, address)
        vac = vacation.get(tx, box.id)
    if vac is None:
        raise NotFound(f"mailbox {box.address!r} has no vacation reply")
    return record(box.address, vac, int(time.time()), body=True)


def list_all(env: Env, actor: Actor) -> list[dict[str, Any]]:
    if actor.role == "user":
        raise Forbidden("mailbox users see only their own vacation (/me/vacation)")
    with env.db.read() as tx:
        entries = vacation.list_all(tx)
    now = int(time.time())
    return [
        record(address, vac, now, body=False)
        for address, vac in entries
        if actor.sees(address.rpartition("@")[2])
    ]
