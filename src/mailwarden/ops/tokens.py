"""API token operations: create (the secret shown once), list, show, revoke, and
``authenticate`` (bearer token -> ``Actor``) for the REST API.

A token is ``mw_`` followed by 43 URL-safe characters: 32 random bytes
(``secrets.token_urlsafe(32)``, 256 bits). Only its SHA-256 is stored. A fast unsalted
hash is enough here, unlike for passwords: the secret is random and 256 bits long, so
there is no dictionary to try and no way to brute-force it from the hash; a salt or a slow
hash (bcrypt, argon2) would only cost time on every request. Lookup is by the hash (a
unique index), so checking a token does not compare secrets byte by byte in Python.

Rules: a name is 1..64 characters of ``A-Za-z0-9._-``; the role is admin, domain-admin
or readonly; a domain admin needs at least one ``domain`` (existing domains), the other
roles take none; ``expires_in`` is a positive number of seconds.
Tokens are global objects: only admin tokens (and root at the CLI) manage them.

Who calls it: ``admin/token.py``, ``api/auth.py``, ``api/routes``.
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailwarden import address
from mailwarden.errors import UsageError
from mailwarden.ops.base import Actor, Env, Page, change, decode_cursor, page_size, paginate
from mailwarden.store import domains, tokens
from mailwarden.units import format_iso

PREFIX = "mw_"
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Created:
    record: dict[str, Any]
    token: str  # the secret: shown once, never stored


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def record(token: tokens.Token, now: int | None = None) -> dict[str, Any]:
    now = int(time.time()) if now is None else now
    if token.revoked_at is not None:
        state = "revoked"
    elif token.expires_at is not None and token.expires_at <= now:
        state = "expired"
    else:
        state = "active"
    return {
        "name": token.name,
        "role": token.role,
        "domains": list(token.domains),
        "state": state,
        "created": format_iso(token.created_at),
        "expires": format_iso(token.expires_at),
        "revoked": format_iso(token.revoked_at),
        "last_used": format_iso(token.last_used_at),
    }


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"invalid token name {name!r}: 1-64 of A-Z a-z 0-9 . _ -")
    return name


def create(
    env: Env,
    actor: Actor,
    name: str,
    *,
    role: str,
    domain_names: Sequence[str] = (),
    expires_in: int | None = None,
) -> Created:
    """Make a token; the secret is in the result and nowhere else."""
    actor.require_admin("manage tokens")
    name = check_name(name)
    if role not in tokens.ROLES:
        raise UsageError(f"unknown role {role!r}: use {', '.join(tokens.ROLES)}")
    names = sorted({address.normalize_domain(d) for d in domain_names})
    if role == "domain-admin" and not names:
        raise UsageError("a domain-admin token needs at least one --domain")
    if role != "domain-admin" and names:
        raise UsageError(f"--domain applies to domain-admin tokens only, not to {role}")
    if expires_in is not None and expires_in <= 0:
        raise UsageError("invalid duration: must be longer than 0")
    secret = PREFIX + secrets.token_urlsafe(32)
    now = int(time.time())
    with change(env, actor, "token.create", name, None) as ch:
        for domain in names:
            domains.require(ch.tx, domain)
        token = tokens.add(
            ch.tx,
            name=name,
            token_hash=hash_token(secret),
            role=role,
            domains=names,
            now=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        ch.after = record(token, now)
    return Created(ch.after, secret)


def show(env: Env, actor: Actor, name: str) -> dict[str, Any]:
    actor.require_admin("manage tokens")
    with env.db.read() as tx:
        return record(tokens.require(tx, name))


def page(env: Env, actor: Actor, *, cursor: str | None = None, limit: int | None = None) -> Page:
    actor.require_admin("manage tokens")
    size = page_size(limit)
    with env.db.read() as tx:
        found = tokens.page(tx, after=decode_cursor(cursor), limit=size + 1)
    return paginate([record(t) for t in found], size, "name")


def list_all(env: Env, actor: Actor) -> list[dict[str, Any]]:
    actor.require_admin("manage tokens")
    with env.db.read() as tx:
        return [record(t) for t in tokens.page(tx, limit=1_000_000)]


def revoke(env: Env, actor: Actor, name: str) -> dict[str, Any]:
    """Revoke a token at once (the row stays, for the audit trail's sake)."""
    actor.require_admin("manage tokens")
    now = int(time.time())
    with change(env, actor, "token.revoke", name, None) as ch:
        token = tokens.require(ch.tx, name)
        ch.before = record(token, now)
        if token.revoked_at is None:
            tokens.revoke(ch.tx, token.id, now)
        ch.after = record(tokens.require(ch.tx, name), now)
    return ch.after


def authenticate(env: Env, secret: str, client: str) -> Actor | None:
    """The actor of a bearer token, or None when it is unknown, revoked or expired."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    now = int(time.time())
    with env.db.transaction() as tx:
        token = tokens.by_hash(tx, hash_token(secret))
        if token is None or not token.usable(now):
            return None
        tokens.touch(tx, token.id, now)
    return Actor(f"api:{token.name}@{client}", token.role, frozenset(token.domains))
