"""Forward operations: show, replace (set), clear the forwards of one mailbox.

Rules: the mailbox exists (and is visible to the actor); it does not forward to itself
(keep a copy instead); destinations in domains hosted here exist; no loop
(``store.forwards``, ``store.aliases``). A domain admin's destinations follow the alias
rule (``ops.aliases.check_destinations_visible``).

Who calls it: ``admin/forward.py``, ``api/routes`` (``/forwards/{address}`` and ``/me``).
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailwarden import address
from mailwarden.ops.aliases import check_destinations_visible
from mailwarden.ops.base import Actor, Env, change, check_etag
from mailwarden.store import forwards, mailboxes
from mailwarden.store.db import Tx


def parse(env: Env, text: str) -> str:
    return str(address.parse_address(text, delimiter=env.delimiter))


def _mailbox(tx: Tx, actor: Actor, addr: str) -> mailboxes.Mailbox:
    domain = addr.rpartition("@")[2]
    if actor.role == "user":
        if addr != actor.mailbox:
            actor.require_sees(domain, f"unknown mailbox {addr!r}")
    else:
        actor.require_sees(domain, f"unknown mailbox {addr!r}")
    return mailboxes.require(tx, addr)


def record(tx: Tx, box: mailboxes.Mailbox) -> dict[str, Any]:
    return {
        "address": box.address,
        "forwards": forwards.destinations(tx, box.id),
        "keep_copy": box.forward_keep_copy,
    }


def show(env: Env, actor: Actor, address_text: str) -> dict[str, Any]:
    addr = parse(env, address_text)
    with env.db.read() as tx:
        return record(tx, _mailbox(tx, actor, addr))


def replace(
    env: Env,
    actor: Actor,
    address_text: str,
    destinations: Sequence[str],
    *,
    keep_copy: bool = False,
    if_match: str | None = None,
) -> dict[str, Any]:
    """Make ``destinations`` the mailbox's forwards (empty = clear); return the record."""
    addr = parse(env, address_text)
    targets = list(dict.fromkeys(parse(env, d) for d in destinations))
    with change(env, actor, "forward.set", addr, addr.rpartition("@")[2], self_service=True) as ch:
        box = _mailbox(ch.tx, actor, addr)
        ch.before = record(ch.tx, box)
        check_etag(ch.before, if_match, f"forwards of {addr}")
        check_destinations_visible(ch.tx, actor, targets)
        if targets:
            forwards.replace(ch.tx, box, targets, keep_copy=keep_copy, delimiter=env.delimiter)
        else:
            forwards.clear(ch.tx, box.id)
        ch.after = record(ch.tx, mailboxes.require(ch.tx, addr))
    assert ch.after is not None
    return ch.after


def clear(env: Env, actor: Actor, address_text: str) -> int:
    """Remove every forward of a mailbox; return how many there were."""
    addr = parse(env, address_text)
    with change(
        env, actor, "forward.clear", addr, addr.rpartition("@")[2], self_service=True
    ) as ch:
        box = _mailbox(ch.tx, actor, addr)
        ch.before = record(ch.tx, box)
        removed = forwards.clear(ch.tx, box.id)
        ch.after = record(ch.tx, mailboxes.require(ch.tx, addr))
    return removed
