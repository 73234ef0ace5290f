"""API tokens: name, role, domain scope, expiry and the SHA-256 of the secret.

The secret itself is never stored (``ops.tokens`` makes it and shows it once); a bearer
token is looked up by the hex SHA-256 of what the client sends (``by_hash``).

Who calls it: ``ops.tokens`` (create, list, revoke) and ``api.auth`` (``by_hash``,
``touch``).

Errors: ``Conflict`` "token NAME already exists"; ``NotFound`` "unknown token 'x'".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailwarden.errors import NotFound
from mailwarden.store.db import Row, Tx

ROLES = ("admin", "domain-admin", "readonly")

_SELECT = "SELECT id, name, role, created_at, expires_at, revoked_at, last_used_at FROM api_tokens"


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    name: str
    role: str
    domains: tuple[str, ...]
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None

    def usable(self, now: int) -> bool:
        """Neither revoked nor expired at ``now``."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


def add(
    tx: Tx,
    *,
    name: str,
    token_hash: str,
    role: str,
    domains: Sequence[str],
    now: int,
    expires_at: int | None,
) -> Token:
    token_id = tx.insert(
        "INSERT INTO api_tokens (name, token_hash, role, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (name, token_hash, role, now, expires_at),
        conflict=f"token {name} already exists",
    )
    for domain in domains:
        tx.execute(
            "INSERT INTO api_token_domains (token_id, domain) VALUES (?, ?)", (token_id, domain)
        )
    return require(tx, name)


def _domains(tx: Tx, token_id: int) -> tuple[str, ...]:
    rows = tx.all(
        "SELECT domain FROM api_token_domains WHERE token_id = ? ORDER BY domain", (token_id,)
    )
    return tuple(r["domain"] for r in rows)


def _token(tx: Tx, row: Row) -> Token:
    def opt(key: str) -> int | None:
        return None if row[key] is None else int(row[key])

    return Token(
        id=int(row["id"]),
        name=row["name"],
        role=row["role"],
        domains=_domains(tx, int(row["id"])),
        created_at=int(row["created_at"]),
        expires_at=opt("expires_at"),
        revoked_at=opt("revoked_at"),
        last_used_at=opt("last_used_at"),
    )


def get(tx: Tx, name: str) -> Token | None:
    row = tx.one(_SELECT + " WHERE name = ?", (name,))
    return None if row is None else _token(tx, row)


def require(tx: Tx, name: str) -> Token:
    token = get(tx, name)
    if token is None:
        raise NotFound(f"unknown token {name!r}")
    return token


def by_hash(tx: Tx, token_hash: str) -> Token | None:
    row = tx.one(_SELECT + " WHERE token_hash = ?", (token_hash,))
    return None if row is None else _token(tx, row)


def page(tx: Tx, *, after: str | None = None, limit: int = 100) -> list[Token]:
    """Tokens ordered by name, ``limit`` of them, after the name ``after`` (the cursor)."""
    if after is None:
        rows = tx.all(_SELECT + " ORDER BY name LIMIT ?", (int(limit),))
    else:
        rows = tx.all(_SELECT + " WHERE name > ? ORDER BY name LIMIT ?", (after, int(limit)))
    return [_token(tx, r) for r in rows]


def revoke(tx: Tx, token_id: int, now: int) -> None:
    tx.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (now, token_id))


def touch(tx: Tx, token_id: int, now: int) -> None:
    """Record the last use (at most once a minute per token, to keep reads cheap)."""
    tx.execute(
        "UPDATE api_tokens SET last_used_at = ? WHERE id = ?"
        " AND (last_used_at IS NULL OR last_used_at < ?)",
        (now, token_id, now - 60),
    )
