"""Send-as operations: grant, list, revoke (a login may send as another address).

Rules: the login is an existing mailbox; the address is ``x@domain`` or ``@domain``; a
grant exists once (``store.sendas``). A domain admin sees and grants only where both the
login's domain and the granted address's domain are its own: a grant that mentions
another domain hosted here does not exist for it (404), and granting an address of
another hosted domain is refused as if that address did not exist.

Who calls it: ``admin/sendas.py``, ``api/app``.
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

from typing import Any

from mailwarden.address import parse_source
from mailwarden.errors import Forbidden, NotFound
from mailwarden.ops.base import Actor, Env, change
from mailwarden.store import domains, scopes, sendas
from mailwarden.store.db import Tx


def normalize(text: str) -> str:
    addr = parse_source(text)
    return f"@{addr.domain}" if not addr.local else str(addr)


def _login(tx: Tx, actor: Actor, login: str) -> scopes.Mailbox:
    box = scopes.mailbox(tx, login)
    actor.require_sees(box.domain, f"mailbox {box.address!r} does not exist")
    return box


def _hidden(tx: Tx, actor: Actor, address: str) -> bool:
    """Is ``address`` in a domain hosted here that the actor may not see?"""
    name = address.rpartition("@")[2]
    return actor.scope() is not None and not actor.sees(name) and domains.get(tx, name) is not None


def grant(env: Env, actor: Actor, login: str, address: str) -> dict[str, Any]:
    target = normalize(address)
    with change(env, actor, "sendas.grant", login, None) as ch:
        box = _login(ch.tx, actor, login)
        if _hidden(ch.tx, actor, target):
            raise NotFound(f"{target} does not exist")
        sendas.grant(ch.tx, box.id, box.address, target)
        ch.obj, ch.domain = box.address, box.domain
        ch.after = {"login": box.address, "address": target}
    return ch.after


def revoke(env: Env, actor: Actor, login: str, address: str) -> dict[str, Any]:
    target = normalize(address)
    with change(env, actor, "sendas.revoke", login, None) as ch:
        box = _login(ch.tx, actor, login)
        if _hidden(ch.tx, actor, target):
            raise NotFound(f"{box.address} has no send-as grant for {target}")
        sendas.revoke(ch.tx, box.id, box.address, target)
        ch.obj, ch.domain = box.address, box.domain
        ch.before = {"login": box.address, "address": target}
    return ch.before


def list_grants(env: Env, actor: Actor, login: str | None = None) -> list[dict[str, Any]]:
    if actor.role == "user":
        raise Forbidden("mailbox users have no access to send-as grants")
    with env.db.read() as tx:
        box_id = _login(tx, actor, login).id if login else None
        rows = sendas.list_grants(tx, box_id)
        if actor.scope() is None:
            return rows
        return [
            r
            for r in rows
            if actor.sees(r["login"].rpartition("@")[2]) and not _hidden(tx, actor, r["address"])
        ]
