"""Mailbox operations: add, show, list, set, password, remove.

Rules: the address is a valid mailbox address in a local domain (an alias domain's
message names the domain to use); the domain's mailbox limit; no alias with the same
address; the group exists; services are a non-empty subset of mail, calendar, contacts;
a name is at most 255 characters without control characters; quotas are >= 0 (0 =
unlimited); a new mailbox without services named gets ``env.provision`` (``[api]
provision``, default 7 = all); a password is hashed with ``mail.password_scheme`` (or
the scheme asked for) and, when none is given, one is generated and returned once. A
mailbox whose services exclude mail gets a note: mail to it is refused
(``core.recipient``).

Who calls it: ``admin/user.py``, ``api/routes`` (``/mailboxes``, ``/me``).
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailwarden import address, passwords, units
from mailwarden.core import domainmatch, recipient
from mailwarden.errors import UsageError
from mailwarden.ops.base import (
    Actor,
    Env,
    Page,
    change,
    check_etag,
    decode_cursor,
    page_size,
    paginate,
)
from mailwarden.store import aliases, domains, forwards, groups, listing, mailboxes
from mailwarden.store.db import Tx

MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Added:
    record: dict[str, Any]
    password: str | None  # the generated password, or None when one was given
    notes: list[str]


@dataclass(frozen=True, slots=True)
class Removed:
    record: dict[str, Any]
    still_sending_here: list[str]


def check_name(text: str) -> str:
    if len(text) > MAX_NAME or any(ch < " " or ch == "\x7f" for ch in text):
        raise UsageError(f"invalid --name: at most {MAX_NAME} characters, no control characters")
    return text


def services_bits(value: int | str | list[str]) -> int:
    """Services as a bitfield from ``7``, ``"mail,calendar"`` or ``["mail"]``."""
    if isinstance(value, int):
        if not 1 <= value <= mailboxes.ALL_SERVICES:
            raise UsageError("services must be 1..7 (1 mail, 2 calendar, 4 contacts)")
        return value
    text = value if isinstance(value, str) else ",".join(value)
    return mailboxes.parse_services(text)


def _check_quota(values: Mapping[str, Any]) -> None:
    for key in ("quota_bytes", "quota_messages"):
        if key in values and (not isinstance(values[key], int) or values[key] < 0):
            raise UsageError(f"{key} must be a whole number >= 0 (0 = unlimited)")


def hash_new_password(env: Env, password: str | None, scheme: str | None) -> tuple[str, str | None]:
    """(hash, the generated password or None when ``password`` was given)."""
    scheme = scheme or env.mail.password_scheme
    if scheme not in passwords.SCHEMES:
        raise UsageError(f"unknown password scheme {scheme!r}: use {', '.join(passwords.SCHEMES)}")
    if password is not None:
        passwords.check_password(password)
        return passwords.hash_password(password, scheme), None
    generated = secrets.token_urlsafe(12)
    return passwords.hash_password(generated, scheme), generated


def check_stored_hash(text: str) -> str:
    """An existing hash for ``add(password_hash=...)``: ``{SCHEME}`` prefix, printable."""
    if not text.startswith("{") or "}" not in text or not text.isprintable() or len(text) > 1024:
        raise UsageError("a stored password hash needs its {SCHEME} prefix (Dovecot's form)")
    return text


def receives(services: int, keep_copy: bool, targets: list[str]) -> str:
    """``yes``, ``forwarded only`` or why not: what ``core.recipient`` decides at RCPT."""
    if not recipient.mailbox_stores(bool(targets), keep_copy):
        return "forwarded only"
    if recipient.has_mail_service(services):
        return "yes"
    return f"no: services exclude mail, so it is refused ({recipient.NO_MAIL.dsn})"


def mail_notes(services: int, *, keep_copy: bool, targets: list[str]) -> list[str]:
    answer = receives(services, keep_copy, targets)
    return [f"receives mail: {answer}"] if answer.startswith("no") else []


def record(env: Env, tx: Tx, box: mailboxes.Mailbox) -> dict[str, Any]:
    used = mailboxes.usage(tx, box.id)
    targets = forwards.destinations(tx, box.id)
    return {
        "address": box.address,
        "name": box.name,
        "active": box.active,
        "maildir": address.maildir_path(env.mail.root, box.maildir),
        "quota_bytes": box.quota_bytes,
        "quota_messages": box.quota_messages,
        "used_bytes": used.bytes if used else None,
        "used_messages": used.messages if used else None,
        "group": box.group,
        "services": mailboxes.service_names(box.services),
        "receives_mail": receives(box.services, box.forward_keep_copy, targets),
        "forwards": targets,
        "keep_copy": box.forward_keep_copy,
        "aliases": aliases.sources_to(tx, box.address),
        "last_login": units.format_utc(box.last_login),
        "created_at": units.format_iso(box.created_at),
    }


def parse(env: Env, text: str) -> str:
    return str(address.parse_address(text, delimiter=env.delimiter))


def visible(tx: Tx, actor: Actor, addr: str) -> mailboxes.Mailbox:
    """The mailbox, or ``NotFound`` when it, or its domain for this actor, does not exist."""
    if not (actor.role == "user" and actor.mailbox == addr):
        actor.require_sees(addr.rpartition("@")[2], f"unknown mailbox {addr!r}")
    return mailboxes.require(tx, addr)


def add(
    env: Env,
    actor: Actor,
    address_text: str,
    *,
    password: str | None = None,
    scheme: str | None = None,
    settings: Mapping[str, Any] | None = None,
    group: str | None = None,
    active: bool = True,
    password_hash: str | None = None,
) -> Added:
    """Create a mailbox; ``settings``: name, quota_bytes, quota_messages, services.

    ``password_hash`` (imports): an existing hash with its Dovecot ``{SCHEME}`` prefix,
    stored as is instead of hashing ``password`` (``imports.hashes`` decides what is one).
    """
    addr = address.parse_mailbox_address(address_text, delimiter=env.delimiter)
    values = dict(settings or {})
    _check_quota(values)
    if "name" in values:
        values["name"] = check_name(values["name"])
    if "services" in values:
        values["services"] = services_bits(values["services"])
    actor.require_sees(addr.domain, f"unknown domain {addr.domain!r}")
    maildir = address.maildir_relpath(addr, env.mail.layout)
    if password_hash is not None:
        pw_hash, generated = check_stored_hash(password_hash), None
    else:
        pw_hash, generated = hash_new_password(env, password, scheme)
    with change(env, actor, "mailbox.add", str(addr), addr.domain) as ch:
        domain = domains.require_local(ch.tx, addr.domain, "user")
        grp = groups.require(ch.tx, groups.normalize_name(group or groups.DEFAULT))
        new = mailboxes.NewMailbox(
            local_part=addr.local,
            password_hash=pw_hash,
            maildir=maildir,
            name=values.get("name", ""),
            quota_bytes=values.get("quota_bytes", domain.default_quota_bytes),
            quota_messages=values.get("quota_messages", 0),
            group_id=grp.id,
            services=values.get("services", env.provision),
            active=active,
        )
        box = mailboxes.add(ch.tx, domain, new)
        ch.after = record(env, ch.tx, box)
    assert ch.after is not None
    notes = mail_notes(box.services, keep_copy=False, targets=[])
    return Added(ch.after, generated, notes)


def show(env: Env, actor: Actor, address_text: str) -> dict[str, Any]:
    addr = parse(env, address_text)
    with env.db.read() as tx:
        return record(env, tx, visible(tx, actor, addr))


def page(
    env: Env,
    actor: Actor,
    *,
    cursor: str | None = None,
    limit: int | None = None,
    domain: str | None = None,
    active: bool | None = None,
) -> Page:
    size = page_size(limit)
    name = domainmatch.normalize(domain) if domain else None
    with env.db.read() as tx:
        if name is not None:
            actor.require_sees(name, f"unknown domain {name!r}")
            domains.require(tx, name)
        rows = listing.mailboxes_page(
            tx,
            after=decode_cursor(cursor),
            limit=size + 1,
            domain=name,
            scope=actor.scope(),
            active=active,
        )
    return paginate(rows, size, "address")


def list_all(env: Env, actor: Actor, domain: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        got = page(env, actor, cursor=cursor, limit=1000, domain=domain)
        items.extend(got.items)
        if got.next_cursor is None:
            return items
        cursor = got.next_cursor


def update(
    env: Env,
    actor: Actor,
    address_text: str,
    changes: Mapping[str, Any],
    *,
    group: str | None = None,
    if_match: str | None = None,
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Change name, quotas, services, ``active`` or the group; (record, changed, notes)."""
    addr = parse(env, address_text)
    values = dict(changes)
    if not values and group is None:
        raise UsageError("nothing to change: give at least one option (see --help)")
    _check_quota(values)
    if "name" in values:
        values["name"] = check_name(values["name"])
    if "services" in values:
        values["services"] = services_bits(values["services"])
    if "active" in values:
        values["active"] = int(bool(values["active"]))
    with change(env, actor, "mailbox.set", addr, addr.rpartition("@")[2]) as ch:
        box = visible(ch.tx, actor, addr)
        ch.before = record(env, ch.tx, box)
        check_etag(ch.before, if_match, f"mailbox {addr}")
        if group is not None:
            values["group_id"] = groups.require(ch.tx, groups.normalize_name(group)).id
        mailboxes.update(ch.tx, box.id, values)
        notes = mail_notes(
            values.get("services", box.services),
            keep_copy=box.forward_keep_copy,
            targets=forwards.destinations(ch.tx, box.id),
        )
        ch.after = record(env, ch.tx, mailboxes.require(ch.tx, addr))
    assert ch.after is not None
    return ch.after, sorted(values), notes


def set_password(
    env: Env,
    actor: Actor,
    address_text: str,
    *,
    password: str | None = None,
    scheme: str | None = None,
) -> str | None:
    """Set a new password (generated when None: returned once)."""
    addr = parse(env, address_text)
    pw_hash, generated = hash_new_password(env, password, scheme)
    with change(
        env, actor, "mailbox.password", addr, addr.rpartition("@")[2], self_service=True
    ) as ch:
        box = visible(ch.tx, actor, addr)
        mailboxes.set_password(ch.tx, box.id, pw_hash)
        ch.after = {"address": addr, "password": "changed"}
    return generated


def remove(env: Env, actor: Actor, address_text: str, *, if_match: str | None = None) -> Removed:
    """Delete the row (forwards and settings go with it; the Maildir stays on disk)."""
    addr = parse(env, address_text)
    with change(env, actor, "mailbox.remove", addr, addr.rpartition("@")[2]) as ch:
        box = visible(ch.tx, actor, addr)
        ch.before = record(env, ch.tx, box)
        check_etag(ch.before, if_match, f"mailbox {addr}")
        pointing = aliases.sources_to(ch.tx, addr) + forwards.forwarders_to(ch.tx, addr)
        mailboxes.remove(ch.tx, box.id)
    return Removed(ch.before, pointing)
