"""Scopes: the SCOPE argument of ``spam`` and ``ratelimit`` commands, and mailbox look-ups.

A scope names where a setting applies:

``global``                         everything (spam settings and lists only)
``example.com``                    a local domain (its row is the default for its mailboxes)
``user@example.com``               one mailbox (for rate limits: the SASL login)
``192.0.2.7``, ``2001:db8::/48``   a client address or network (rate limits only); stored
                                   as ``client:<normalised network>``

``parse_scope`` is the pure part (what kind of scope the text is, in canonical form);
``resolve`` adds the database look-up and returns the ids the foreign keys need, so a row
disappears with its domain or mailbox. ``mailbox`` and ``local_domain`` are the look-ups
the other policy modules use for LOGIN/ADDRESS arguments.

Errors: ``UsageError`` for text that is no valid scope, or a domain that is not local;
``NotFound`` for a domain or mailbox that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.address import normalize_domain, parse_address
from mailwarden.core import relaynet
from mailwarden.core.ratelimit import CLIENT_PREFIX
from mailwarden.errors import NotFound, UsageError
from mailwarden.store.db import Tx

GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class ParsedScope:
    """``kind`` is global, domain, mailbox or client; ``name`` is the canonical text."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Scope:
    """A resolved scope: ``name`` is what the ``scope`` column holds."""

    kind: str
    name: str
    domain_id: int | None = None
    mailbox_id: int | None = None


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: int
    address: str
    domain_id: int
    domain: str


def parse_scope(text: str, *, clients: bool = False, allow_global: bool = True) -> ParsedScope:
    """Classify ``text`` without touching the database."""
    raw = text.strip()
    if raw.lower() == GLOBAL:
        if not allow_global:
            raise UsageError("scope 'global' is not valid here: name a domain, address or client")
        return ParsedScope("global", GLOBAL)
    if raw.lower().startswith(CLIENT_PREFIX):
        raw = raw[len(CLIENT_PREFIX) :]
        if not clients:
            raise UsageError(f"scope {text!r}: client networks are only valid for rate limits")
    if "@" in raw:
        return ParsedScope("mailbox", str(parse_address(raw)))
    if _looks_like_ip(raw):
        if not clients:
            raise UsageError(f"scope {text!r}: client networks are only valid for rate limits")
        return ParsedScope("client", CLIENT_PREFIX + relaynet.parse_cidr(raw).text)
    try:
        return ParsedScope("domain", normalize_domain(raw))
    except UsageError:
        kinds = "'global', a domain or an address" if allow_global else "a domain or an address"
        if clients:
            kinds = "a domain, an address or a client IP/CIDR"
        raise UsageError(f"invalid scope {text!r}: expected {kinds}") from None


def resolve(tx: Tx, text: str, *, clients: bool = False, allow_global: bool = True) -> Scope:
    """``parse_scope`` plus the look-up; a domain must be local, a mailbox must exist."""
    parsed = parse_scope(text, clients=clients, allow_global=allow_global)
    if parsed.kind == "domain":
        return Scope("domain", parsed.name, domain_id=local_domain(tx, parsed.name))
    if parsed.kind == "mailbox":
        box = mailbox(tx, parsed.name)
        return Scope("mailbox", box.address, mailbox_id=box.id)
    return Scope(parsed.kind, parsed.name)


def local_domain(tx: Tx, name: str) -> int:
    """The id of the local domain ``name``; NotFound / UsageError otherwise."""
    row = tx.one("SELECT id, kind FROM domains WHERE name = ?", (name,))
    if row is None:
        raise NotFound(f"domain {name!r} does not exist")
    kind = str(row["kind"])
    if kind != "local":
        article = "an" if kind[:1] in "aeiou" else "a"
        raise UsageError(f"domain {name!r} is {article} {kind} domain; use a local domain")
    return int(row["id"])


def mailbox(tx: Tx, address: str) -> Mailbox:
    """The mailbox with ``address`` (parsed and normalised first); NotFound otherwise."""
    normal = str(parse_address(address))
    box = find_mailbox(tx, normal)
    if box is None:
        raise NotFound(f"mailbox {normal!r} does not exist")
    return box


def find_mailbox(tx: Tx, normal_address: str) -> Mailbox | None:
    """Look up an already normalised address; None if there is no such mailbox."""
    row = tx.one(
        "SELECT m.id, m.address, m.domain_id, d.name AS domain FROM mailboxes m "
        "JOIN domains d ON d.id = m.domain_id WHERE m.address = ?",
        (normal_address,),
    )
    if row is None:
        return None
    return Mailbox(int(row["id"]), str(row["address"]), int(row["domain_id"]), str(row["domain"]))


def _looks_like_ip(text: str) -> bool:
    head = text.split("/", 1)[0]
    return ":" in head or (bool(head) and all(p.isdigit() for p in head.split(".")))
