"""Mailbox logins outside Dovecot: the DAV server's (calendar, contacts) password check,
and the provisioning of a mailbox at its first login (``first_login``).

Rules: the login is a mailbox address (normalised as Dovecot's ``%Lu`` does); the
mailbox and its domain are active; the password matches the stored hash, with the same
schemes Dovecot reads (``passwords.verify_password``: crypt, argon2, SSHA*, PBKDF2, ...);
and the mailbox's services include one the caller asks for: ``DAV`` = calendar (2) or
contacts (4). A mailbox without them is refused like a wrong password (a DAV client
learns nothing more), and the reason is returned for the server's log.

Who calls it: ``contrib/radicale/radicale_mailwarden_auth.py`` (Radicale's auth plugin);
``admin/user.py`` (``user first-login``, run by Dovecot's post-login script) and
``api.auth`` (``/me``) for ``first_login``.
Errors: none for a refused login (``Login.ok`` is False); ``NotFound`` for a first login
of an unknown mailbox; ``StoreUnavailable`` when the database cannot be reached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from mailwarden import address, passwords
from mailwarden.errors import UsageError
from mailwarden.ops.base import Env
from mailwarden.store import logins, mailboxes
from mailwarden.store.mailboxes import SERVICES
from mailwarden.units import format_iso

log = logging.getLogger("mailwarden.provision")

DAV = SERVICES["calendar"] | SERVICES["contacts"]


@dataclass(frozen=True, slots=True)
class Login:
    ok: bool
    user: str  # the normalised address (what the DAV server names the principal)
    why: str  # for the log: "ok", "unknown", "inactive", "password", "services"


def check(env: Env, login: str, password: str, services: int = DAV) -> Login:
    """May ``login`` with ``password`` use any of ``services``?"""
    try:
        user = str(address.parse_address(login, delimiter=env.delimiter))
    except UsageError:
        return Login(False, login, "unknown")
    with env.db.read() as tx:
        found = logins.get(tx, user)
    if found is None:
        return Login(False, user, "unknown")
    try:
        right = passwords.verify_password(password, found.password_hash)
    except (ValueError, UsageError):
        right = False
    if not right:
        return Login(False, user, "password")
    if not found.active:
        return Login(False, user, "inactive")
    if not found.services & services:
        return Login(False, user, "services")
    return Login(True, user, "ok")


def first_login(
    env: Env, login: str, *, client: str = "-", now: int | None = None
) -> dict[str, Any] | None:
    """Provision ``login`` at its first successful login: record it (``provisioned_at``,
    ``last_login``) and log one line; None when an earlier login already did (idempotent).

    The folders (Drafts, Sent, Trash, Junk, created and subscribed) are Dovecot's, by
    ``auto = subscribe`` (contrib/dovecot/15-mailwarden-mailboxes.conf), at every login
    that finds one missing; this is what Dovecot does not do. Seed 002's
    ``checkUserProvisioning: OK`` line, as ``first login: OK address=... client=...
    services=... maildir=...``.
    """
    user = str(address.parse_address(login, delimiter=env.delimiter))
    at = int(time.time()) if now is None else now
    with env.db.transaction() as tx:
        box = mailboxes.require(tx, user)
        if not mailboxes.mark_first_login(tx, box.id, at):
            return None
    names = mailboxes.service_names(box.services)
    record: dict[str, Any] = {
        "address": box.address,
        "client": client,
        "services": names,
        "maildir": address.maildir_path(env.mail.root, box.maildir),
        "at": format_iso(at),
    }
    log.info(
        "first login: OK address=%s client=%s services=%s maildir=%s",
        record["address"],
        client,
        ",".join(names) or "-",
        record["maildir"],
    )
    return record
