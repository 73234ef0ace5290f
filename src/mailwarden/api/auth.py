"""Who is calling: bearer tokens for the admin endpoints, mailbox logins for ``/me``.

Admin endpoints take ``Authorization: Bearer mw_...`` (``ops.tokens.authenticate``); a
missing, unknown, expired or revoked token, or any other scheme (a mailbox password on
an admin endpoint included), is 401. ``/me`` takes HTTP Basic with the mailbox address
and its password, verified against the stored hash with the same schemes as Dovecot
(``passwords.verify_password``); an inactive mailbox or domain cannot log in. A
mailbox's first successful login here is its first login (``ops.logins.first_login``:
recorded once, one line in ``api.log``).

Throttling (``Throttle``): failed logins are counted per client address and per account
in a sliding window; past the limit the login is refused with 429 and ``Retry-After``
without checking the password (so guessing costs the guesser, not the hash function).
A success does not erase earlier failures. Failed bearer tokens count per client too.

The counters live in the ``Throttle`` object the app owns (per process): with several
API processes each has its own window, which at most multiplies the allowance.

Who calls it: ``api.routes`` (as FastAPI dependencies built in ``api.app``).
Errors: ``api.errors.Unauthorized`` (401), ``api.errors.Throttled`` (429).
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from mailwarden import address, passwords
from mailwarden.api.errors import Throttled, Unauthorized
from mailwarden.errors import UsageError
from mailwarden.ops import logins as ops_logins
from mailwarden.ops import tokens
from mailwarden.ops.base import Actor, Env
from mailwarden.store import logins


@dataclass
class Throttle:
    """Sliding-window failure counters: ``limit`` failures per ``window`` seconds per key."""

    per_client: int = 10
    per_account: int = 5
    window: float = 300.0
    _fails: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, key: str, now: float) -> deque[float]:
        stamps = self._fails.setdefault(key, deque())
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        return stamps

    def check(self, client: str, account: str | None = None) -> None:
        """``Throttled`` when the client or the account is past its limit."""
        now = time.monotonic()
        with self._lock:
            for key, limit in (
                (f"c:{client}", self.per_client),
                (f"a:{account}", self.per_account),
            ):
                if key == "a:None":
                    continue
                stamps = self._recent(key, now)
                if len(stamps) >= limit:
                    wait = int(stamps[0] + self.window - now) + 1
                    raise Throttled("too many failed logins; try again later", wait)
            if len(self._fails) > 100_000:  # bound memory: forget idle keys
                for key in [k for k, v in self._fails.items() if not self._recent(k, now)]:
                    del self._fails[key]

    def failed(self, client: str, account: str | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(f"c:{client}", now).append(now)
            if account is not None:
                self._recent(f"a:{account}", now).append(now)


def bearer(env: Env, throttle: Throttle, header: str | None, client: str) -> Actor:
    """The actor of ``Authorization: Bearer ...`` (see the module doc)."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("an API token is required: Authorization: Bearer <token>")
    throttle.check(client)
    actor = tokens.authenticate(env, value.strip(), client)
    if actor is None:
        throttle.failed(client)
        raise Unauthorized("invalid, expired or revoked token")
    return actor


def mailbox(env: Env, throttle: Throttle, header: str | None, client: str) -> Actor:
    """The actor of ``Authorization: Basic`` with a mailbox address and its password."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("log in with the mailbox address and password (HTTP Basic)")
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        login = str(address.parse_address(user, delimiter=env.delimiter))
    except (binascii.Error, UnicodeDecodeError, UsageError):
        throttle.failed(client)
        raise Unauthorized("invalid login") from None
    throttle.check(client, login)
    with env.db.read() as tx:
        found = logins.get(tx, login)
    ok = found is not None and found.active and _verify(password, found.password_hash)
    if not ok:
        throttle.failed(client, login)
        raise Unauthorized("invalid login")
    assert found is not None
    if not found.provisioned:  # the first login: recorded once (ops.logins.first_login)
        ops_logins.first_login(env, login, client=client)
    return Actor(f"me:{login}@{client}", "user", mailbox=login)


def _verify(password: str, stored: str) -> bool:
    try:
        return passwords.verify_password(password, stored)
    except (ValueError, UsageError):
        return False
