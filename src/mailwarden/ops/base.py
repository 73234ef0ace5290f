"""What every operation shares: the caller (``Actor``), the environment (``Env``), the
audited change (``change``), ETags, cursors and pages.

Who calls it: every module of ``mailwarden.ops``; the CLI builds ``Actor.cli()``, the API
builds an actor from the bearer token or the mailbox login.

Errors: ``Forbidden`` when the actor's role may not change anything (readonly, user) or
may not touch a global object (a domain admin on relay networks or tokens); ``NotFound``
for an object of a domain outside a domain admin's scope; ``Stale`` when an If-Match
ETag no longer matches; ``UsageError`` for a damaged cursor.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import json
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailwarden.config import MailSettings
from mailwarden.errors import Forbidden, NotFound, Stale, UsageError
from mailwarden.store import audit
from mailwarden.store.db import Database, Tx

ROLES = ("admin", "domain-admin", "readonly", "user")
# Keys never written to the audit trail nor returned by a reader.
SECRET_KEYS = frozenset({"password", "password_hash", "token", "token_hash", "secret"})
# Keys that change without anyone editing the object (delivery, logins): not in the ETag.
VOLATILE_KEYS = frozenset({"used_bytes", "used_messages", "last_login", "last_used"})
MAX_PAGE = 1000
DEFAULT_PAGE = 100


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: ``who`` is the audit name (``cli:root@host``, ``api:billing@10.0.0.5``)."""

    who: str
    role: str
    domains: frozenset[str] = frozenset()  # the scope of a domain admin
    mailbox: str | None = None  # the login of a mailbox user

    @classmethod
    def cli(cls) -> Actor:
        """root (or whoever runs the CLI) at this host: an admin."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(f"cli:{user}@{socket.gethostname()}", "admin")

    def sees(self, domain: str | None) -> bool:
        """May this actor see objects of ``domain`` (None = a global object)?"""
        if self.role in ("admin", "readonly"):
            return True
        if self.role == "domain-admin":
            return domain is not None and domain in self.domains
        return False

    def scope(self) -> frozenset[str] | None:
        """The domains a listing is limited to; None for all."""
        return self.domains if self.role == "domain-admin" else None

    def require_sees(self, domain: str, what: str) -> None:
        """``NotFound(what)`` when ``domain`` is outside the scope: as if it did not exist."""
        if not self.sees(domain):
            raise NotFound(what)

    def require_write(self, *, self_service: bool = False) -> None:
        """Admins and domain admins may change things; a mailbox user only where the
        operation is ``self_service`` (its own password, forward, vacation, spam)."""
        if self.role == "user" and self_service:
            return
        if self.role not in ("admin", "domain-admin"):
            raise Forbidden(f"a {self.role} token may not change anything")

    def require_admin(self, what: str) -> None:
        """Global objects (domains themselves, relay networks, tokens): admins only."""
        if self.role != "admin":
            if self.role == "readonly":
                raise Forbidden(f"a {self.role} token may not change anything")
            raise Forbidden(f"only an admin token may {what}")


@dataclass(frozen=True, slots=True)
class Env:
    """What operations work with: the database, the mail settings and the services a new
    mailbox gets when none are named (``[api] provision``: 1 mail, 2 calendar, 4 contacts)."""

    db: Database
    mail: MailSettings = field(default_factory=MailSettings)
    provision: int = 7

    @property
    def delimiter(self) -> str:
        return self.mail.recipient_delimiter


@dataclass(slots=True)
class Change:
    """The open change: set ``before``/``after`` (records) for the audit row."""

    tx: Tx
    obj: str
    domain: str | None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


@contextlib.contextmanager
def change(
    env: Env,
    actor: Actor,
    action: str,
    obj: str,
    domain: str | None,
    *,
    self_service: bool = False,
) -> Iterator[Change]:
    """One transaction with one audit row, written when the block succeeds.

    ``self_service``: a mailbox user may run it (on its own mailbox: the operation checks).
    """
    actor.require_write(self_service=self_service)
    with env.db.transaction() as tx:
        ch = Change(tx, obj, domain)
        yield ch
        audit.record(
            tx,
            at=int(time.time()),
            actor=actor.who,
            action=action,
            obj=ch.obj,
            domain=ch.domain,
            before=scrub(ch.before),
            after=scrub(ch.after),
        )


def scrub(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The record without secrets (``SECRET_KEYS``)."""
    if record is None:
        return None
    return {k: v for k, v in record.items() if k not in SECRET_KEYS}


def etag(record: Mapping[str, Any]) -> str:
    """A strong ETag of a record: the first 20 hex digits of its canonical JSON's SHA-256
    (``VOLATILE_KEYS`` left out: a delivery does not make an admin's edit stale)."""
    kept = {k: v for k, v in record.items() if k not in VOLATILE_KEYS}
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:20] + '"'


def check_etag(record: Mapping[str, Any], if_match: str | None, what: str) -> None:
    """``Stale`` when ``if_match`` (an If-Match header value) does not match ``record``."""
    if if_match is None:
        return
    tags = {t.strip().removeprefix("W/") for t in if_match.split(",")}
    if "*" not in tags and etag(record) not in tags:
        raise Stale(f"{what} was changed by someone else; read it again and retry")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: ``items`` and the cursor of the next page (None = last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise UsageError("invalid cursor: pass the next_cursor of the previous page") from None


def page_size(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"limit must be 1..{MAX_PAGE}")
    return limit


def paginate(rows: list[dict[str, Any]], limit: int, key: str) -> Page:
    """``rows`` fetched with ``limit + 1``: the page and the cursor after its last row."""
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, encode_cursor(str(rows[-1][key])))
    return Page(rows, None)
