"""Fetch-account operations: add, list, show, remove (with their checks and audit rows).

Rules: the mailbox exists (and the actor sees its domain); protocol pop3|imap; tls
tls|starttls|none; port 1..65535 (default by protocol and tls: 995/110, 993/143); the
interval 60 s .. 7 days; host and user name non-empty, without spaces or control
characters. The remote password arrives in clear and leaves encrypted
(``fetch.secret``): the audit row and every record carry no password.

A mailbox user (the API's ``/me/fetch``) sees, adds and removes the accounts of its own
mailbox only (``_sees``): another mailbox's account is ``NotFound`` as for a domain admin.

Who calls it: ``admin/fetch.py``; the REST API (``api/routes_fetch.py``).
Errors: ``UsageError`` for a bad value; ``NotFound`` for an unknown account or mailbox;
``Conflict`` for an account the mailbox has already; see ``mailwarden.ops``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mailwarden import address
from mailwarden.errors import NotFound, UsageError
from mailwarden.ops.base import Actor, Env, change
from mailwarden.store import fetch as store
from mailwarden.store import mailboxes

MIN_INTERVAL = 60
MAX_INTERVAL = 7 * 86400
DEFAULT_PORTS = {
    ("pop3", True): 995,
    ("pop3", False): 110,
    ("imap", True): 993,
    ("imap", False): 143,
}


@dataclass(frozen=True, slots=True)
class NewAccount:
    mailbox: str
    protocol: str
    host: str
    username: str
    password_enc: str  # already encrypted (fetch.secret.encrypt)
    port: int = 0  # 0 = the protocol's default
    tls: str = "tls"
    verify_cert: bool = True
    folder: str = "INBOX"
    keep: bool = True
    interval: int = 300


def _plain(text: str, what: str) -> str:
    value = text.strip()
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise UsageError(f"{what} {text!r}: must be non-empty, without spaces")
    return value


def check(new: NewAccount) -> NewAccount:
    if new.protocol not in store.PROTOCOLS:
        raise UsageError(f"protocol {new.protocol!r}: expected pop3 or imap")
    if new.tls not in store.TLS_MODES:
        raise UsageError(f"tls {new.tls!r}: expected tls, starttls or none")
    port = new.port or DEFAULT_PORTS[(new.protocol, new.tls == "tls")]
    if not 0 < port < 65536:
        raise UsageError(f"port {new.port}: expected 1..65535")
    if not MIN_INTERVAL <= new.interval <= MAX_INTERVAL:
        raise UsageError(f"interval {new.interval} s: expected 1m .. 7d")
    folder = new.folder.strip() or "INBOX"
    if any(not c.isprintable() for c in folder):
        raise UsageError(f"folder {new.folder!r}: control characters")
    return NewAccount(
        mailbox=new.mailbox,
        protocol=new.protocol,
        host=_plain(new.host, "host").lower(),
        username=_plain(new.username, "user"),
        password_enc=new.password_enc,
        port=port,
        tls=new.tls,
        verify_cert=new.verify_cert,
        folder=folder,
        keep=new.keep,
        interval=new.interval,
    )


def _sees(actor: Actor, mailbox: str) -> bool:
    """May ``actor`` see the accounts of ``mailbox`` (a user: its own only)?"""
    if actor.role == "user":
        return actor.mailbox == mailbox
    return actor.sees(mailbox.rpartition("@")[2])


def add(env: Env, actor: Actor, new: NewAccount) -> dict[str, Any]:
    addr = str(address.parse_address(new.mailbox, delimiter=env.delimiter))
    domain = addr.rpartition("@")[2]
    if not _sees(actor, addr):
        raise NotFound(f"unknown mailbox {addr!r}")
    new = check(new)
    own = actor.role == "user"
    with change(env, actor, "fetch.add", addr, domain, self_service=own) as ch:
        box = mailboxes.require(ch.tx, addr)
        account_id = store.add(
            ch.tx,
            mailbox_id=box.id,
            protocol=new.protocol,
            host=new.host,
            port=new.port,
            tls=new.tls,
            verify_cert=new.verify_cert,
            username=new.username,
            password_enc=new.password_enc,
            folder=new.folder,
            keep=new.keep,
            interval=new.interval,
            now=int(time.time()),
        )
        record = store.require(ch.tx, account_id).record()
        ch.obj = f"fetch:{account_id}"
        ch.after = record
    return record


def _visible(actor: Actor, account: store.Account) -> store.Account:
    if not _sees(actor, account.mailbox):
        raise NotFound(f"no fetch account {account.id}")
    return account


def listing(env: Env, actor: Actor, mailbox: str | None = None) -> list[dict[str, Any]]:
    addr = None if mailbox is None else str(address.parse_address(mailbox, delimiter=env.delimiter))
    with env.db.transaction(write=False) as tx:
        accounts = store.listing(tx, addr)
    return [a.record() for a in accounts if _sees(actor, a.mailbox)]


def show(env: Env, actor: Actor, account_id: int) -> dict[str, Any]:
    with env.db.transaction(write=False) as tx:
        return _visible(actor, store.require(tx, account_id)).record()


def get(env: Env, actor: Actor, account_id: int) -> store.Account:
    with env.db.transaction(write=False) as tx:
        return _visible(actor, store.require(tx, account_id))


def remove(env: Env, actor: Actor, account_id: int) -> dict[str, Any]:
    with env.db.transaction(write=False) as tx:
        account = store.get(tx, account_id)
    if account is None:
        raise NotFound(f"no fetch account {account_id}")
    _visible(actor, account)
    domain = account.mailbox.rpartition("@")[2]
    own = actor.role == "user"
    with change(env, actor, "fetch.remove", f"fetch:{account_id}", domain, self_service=own) as ch:
        ch.before = account.record()
        store.remove(ch.tx, account_id)
    return account.record()
