"""Wildcard domains: which stored domain hosts a concrete domain name.

What it does
    A domain row is either exact (``example.test``) or a wildcard (``*.example.test``,
    Sambar's "Local Domains ... *sambar.com"): the wildcard hosts every subdomain of
    ``example.test`` at any depth (``a.example.test``, ``x.y.example.test``) but not
    ``example.test`` itself. Precedence, the same wherever a domain is looked up (policy
    daemon, admin commands, the Postfix queries in ``contrib/postfix``): the exact name
    wins, then the longest wildcard suffix; the winner's kind and ``active`` flag decide
    (a switched-off exact domain is not taken over by a wildcard above it).

Who calls it: ``store.domains`` and ``store.policy`` (``candidates``, the names to ask
for, best first), ``ops.domains`` (``normalize``), the unit tests' fake store.

Names: ``normalize`` accepts what ``address.normalize_domain`` accepts, or ``*.`` followed
by such a domain, so the suffix always has a dot: ``*.test`` (every .test domain) is
refused. Wildcards are for local and relay domains only (``ops.domains``).

Errors: ``UsageError`` from ``normalize`` naming the bad value.
Pure: no I/O, no mutable module state.
"""

from __future__ import annotations

from collections.abc import Collection

from mailwarden import address
from mailwarden.errors import UsageError

PREFIX = "*."
WILDCARD_KINDS = ("local", "relay")


def is_wildcard(name: str) -> bool:
    return name.startswith(PREFIX)


def suffix(pattern: str) -> str:
    """``example.test`` for ``*.example.test``."""
    return pattern[len(PREFIX) :]


def normalize(text: str) -> str:
    """An exact domain (``address.normalize_domain``) or ``*.`` + one, lower-case A-label."""
    raw = text.strip()
    if not raw.startswith(PREFIX):
        if "*" in raw:
            raise UsageError(
                f"invalid domain {raw!r}: a wildcard is '*.' and a domain, e.g. *.example.com"
            )
        return address.normalize_domain(raw)
    rest = raw[len(PREFIX) :]
    if "*" in rest:
        raise UsageError(f"invalid domain {raw!r}: only one leading '*.' is allowed")
    if "." not in rest.strip().rstrip("."):
        raise UsageError(f"invalid domain {raw!r}: a wildcard needs a domain with a dot after '*.'")
    return PREFIX + address.normalize_domain(rest)


def candidates(name: str) -> list[str]:
    """The stored names that could host ``name``, best first: ``name`` itself, then
    ``*.parent`` for each parent that still has a dot (longest suffix first)."""
    found = [name]
    labels = name.split(".")
    for i in range(1, len(labels) - 1):
        found.append(PREFIX + ".".join(labels[i:]))
    return found


def best(name: str, stored: Collection[str]) -> str | None:
    """The stored name that hosts ``name`` (``candidates`` order), or None."""
    for candidate in candidates(name):
        if candidate in stored:
            return candidate
    return None


def covers(pattern: str, name: str) -> bool:
    """Does the stored name ``pattern`` match ``name`` at all (precedence aside)?"""
    if not is_wildcard(pattern):
        return pattern == name
    return name.endswith("." + suffix(pattern)) and not name.startswith(".")
