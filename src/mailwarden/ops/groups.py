"""Mail group operations: add, list, remove (which services a mailbox's group allows).

Rules (``store.groups``): a valid unique name; ``default`` cannot be removed; a group in
use cannot be removed. Groups are global: admins change them; every token may read them
(a domain admin needs the names to place its mailboxes); the mailbox counts are global
facts, left out for domain admins (``mailboxes`` is None).

Who calls it: ``admin/group.py``, ``api/app``.
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailwarden.errors import Forbidden
from mailwarden.ops.base import Actor, Env, change
from mailwarden.store import groups

SERVICES = groups.SERVICES


def _reader(actor: Actor) -> None:
    if actor.role == "user":
        raise Forbidden("mailbox users have no access to groups")


def add(env: Env, actor: Actor, name: str, allowed: Mapping[str, bool]) -> dict[str, Any]:
    """Create a group; ``allowed`` maps imap/pop3/smtp/sieve to bool (missing = True)."""
    actor.require_admin("change groups")
    name = groups.normalize_name(name)
    flags = {service: bool(allowed.get(service, True)) for service in SERVICES}
    with change(env, actor, "group.add", name, None) as ch:
        groups.add(ch.tx, name, **flags)
        ch.after = {"name": name, **flags}
    return ch.after


def list_all(env: Env, actor: Actor) -> list[dict[str, Any]]:
    _reader(actor)
    with env.db.read() as tx:
        rows = groups.list_all(tx)
    if actor.scope() is not None:
        for row in rows:
            row["mailboxes"] = None
    return rows


def remove(env: Env, actor: Actor, name: str) -> str:
    actor.require_admin("change groups")
    name = groups.normalize_name(name)
    with change(env, actor, "group.remove", name, None) as ch:
        group = groups.require(ch.tx, name)
        ch.before = {"name": name}
        groups.remove(ch.tx, group)
    return name
