"""The import plan: source rows against what mailwarden holds, per object.

``Source`` is what a reader (``postfixadmin``, ``vpopmail``) found, already in
mailwarden's terms; ``Existing`` is what mailwarden holds (records as ``mailwarden.ops``
readers return them). ``make_plan`` lists one ``Item`` per object, in the order they
must be written (domains, alias domains, mailboxes, aliases, forwards, vacations):

``add``          not in mailwarden yet: the import writes it
``same``         present with the same values: nothing to do (re-running is safe)
``conflict``     present with different values (``detail`` names them): never overwritten
``unsupported``  cannot be imported as it is (a hash Dovecot cannot verify, ...)

Pure: no I/O, no clock. Who calls it: ``imports.apply``; unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailwarden import units
from mailwarden.imports.hashes import Hash, Kept, Unsupported

STATUSES = ("add", "same", "conflict", "unsupported")
KIND_ORDER = ("domain", "mailbox", "alias", "forward", "vacation")


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    kind: str = "local"  # local, alias, relay
    alias_of: str | None = None
    transport: str | None = None
    active: bool = True
    limits: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Mailbox:
    address: str
    password: Hash
    name: str = ""
    quota_bytes: int = 0
    quota_messages: int = 0
    active: bool = True
    old_maildir: str = ""  # where the source kept its mail (not moved)


@dataclass(frozen=True, slots=True)
class Alias:
    source: str  # x@domain or @domain (catch-all)
    destinations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Forward:
    address: str
    destinations: tuple[str, ...]
    keep_copy: bool


@dataclass(frozen=True, slots=True)
class Vacation:
    address: str
    subject: str
    body: str
    starts_at: int | None = None
    ends_at: int | None = None
    interval: int | None = None


@dataclass
class Source:
    """What a reader found; ``notes`` are things it skipped, with the reason."""

    domains: list[Domain] = field(default_factory=list)
    mailboxes: list[Mailbox] = field(default_factory=list)
    aliases: list[Alias] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    vacations: list[Vacation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Existing:
    """mailwarden's records (``ops`` readers), keyed by name/address/source."""

    domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    mailboxes: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    vacations: dict[str, dict[str, Any]] = field(default_factory=dict)


Obj = Domain | Mailbox | Alias | Forward | Vacation


@dataclass(frozen=True, slots=True)
class Item:
    kind: str  # KIND_ORDER
    key: str
    status: str  # STATUSES
    detail: str
    obj: Obj

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "object": self.key, "status": self.status, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Plan:
    items: list[Item]
    notes: list[str]

    def having(self, status: str) -> list[Item]:
        return [i for i in self.items if i.status == status]

    @property
    def blocked(self) -> bool:
        """Conflicts or unsupported objects: nothing is written unless asked to skip them."""
        return any(i.status in ("conflict", "unsupported") for i in self.items)

    def counts(self) -> dict[str, int]:
        return {s: len(self.having(s)) for s in STATUSES}


def make_plan(source: Source, existing: Existing) -> Plan:
    """One item per source object, in write order (see the module doc)."""
    items: list[Item] = []
    order = {"local": 0, "relay": 1, "alias": 2}
    for dom in sorted(source.domains, key=lambda d: (order.get(d.kind, 3), d.name)):
        items.append(_domain(dom, existing.domains.get(dom.name)))
    boxes = [_mailbox(m, existing) for m in source.mailboxes]
    items += boxes
    left_out = {i.key for i in boxes if i.status == "unsupported"}
    items += [_after(left_out, _alias(a, existing), a.destinations) for a in source.aliases]
    items += [
        _after(left_out, _forward(f, existing.mailboxes.get(f.address)), (f.address,))
        for f in source.forwards
    ]
    items += [
        _after(left_out, _vacation(v, existing.vacations.get(v.address)), (v.address,))
        for v in source.vacations
    ]
    return Plan(items, list(source.notes))


def _after(left_out: set[str], item: Item, needs: tuple[str, ...]) -> Item:
    """An ``add`` that needs a mailbox left out (unsupported) is unsupported too."""
    missing = [a for a in needs if a in left_out]
    if item.status != "add" or not missing:
        return item
    return Item(item.kind, item.key, "unsupported", f"{missing[0]} is not imported", item.obj)


def _item(kind: str, key: str, obj: Obj, diffs: list[str] | None, extra: str = "") -> Item:
    if diffs is None:
        return Item(kind, key, "add", extra, obj)
    if diffs:
        return Item(kind, key, "conflict", "differs: " + "; ".join(diffs), obj)
    return Item(kind, key, "same", "", obj)


def _diff(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    return [
        f"{k} is {have.get(k)!r}, source has {v!r}" for k, v in want.items() if have.get(k) != v
    ]


def domain_values(dom: Domain) -> dict[str, Any]:
    want: dict[str, Any] = {"kind": dom.kind, "active": dom.active}
    if dom.kind == "alias":
        want["alias_of"] = dom.alias_of
    if dom.kind == "relay":
        want["transport"] = dom.transport
    if dom.kind == "local":
        want.update(dom.limits)
    return want


def _domain(dom: Domain, have: dict[str, Any] | None) -> Item:
    return _item("domain", dom.name, dom, None if have is None else _diff(have, domain_values(dom)))


def mailbox_values(box: Mailbox) -> dict[str, Any]:
    return {
        "name": box.name,
        "quota_bytes": box.quota_bytes,
        "quota_messages": box.quota_messages,
        "active": box.active,
    }


def _mailbox(box: Mailbox, existing: Existing) -> Item:
    have = existing.mailboxes.get(box.address)
    if have is None and box.address in existing.aliases:
        return Item("mailbox", box.address, "conflict", "an alias with this address exists", box)
    if have is None and isinstance(box.password, Unsupported):
        return Item("mailbox", box.address, "unsupported", box.password.why, box)
    note = ""
    if isinstance(box.password, Kept):
        note = box.password.scheme + (
            " (weak: ask the user to change it)" if box.password.weak else ""
        )
    elif have is None:
        note = "clear-text password: hashed anew"
    diffs = None if have is None else _diff(have, mailbox_values(box))
    return _item("mailbox", box.address, box, diffs, note)


def _alias(alias: Alias, existing: Existing) -> Item:
    if alias.source in existing.mailboxes:
        return Item("alias", alias.source, "conflict", "a mailbox with this address exists", alias)
    have = existing.aliases.get(alias.source)
    if have is None:
        return _item("alias", alias.source, alias, None)
    if sorted(have.get("destinations", [])) == sorted(alias.destinations):
        return _item("alias", alias.source, alias, [])
    diff = f"destinations are {have.get('destinations')}, source has {list(alias.destinations)}"
    return _item("alias", alias.source, alias, [diff])


def _forward(fwd: Forward, have: dict[str, Any] | None) -> Item:
    if have is None or not have.get("forwards"):
        return _item("forward", fwd.address, fwd, None)
    want = {"forwards": sorted(fwd.destinations), "keep_copy": fwd.keep_copy}
    got = {"forwards": sorted(have.get("forwards", [])), "keep_copy": have.get("keep_copy")}
    return _item("forward", fwd.address, fwd, _diff(got, want))


def vacation_values(vac: Vacation) -> dict[str, Any]:
    return {
        "active": True,
        "subject": vac.subject.strip(),
        "body": vac.body,
        "from": units.format_iso(vac.starts_at),
        "until": units.format_iso(vac.ends_at),
    }


def _vacation(vac: Vacation, have: dict[str, Any] | None) -> Item:
    diffs = None if have is None else _diff(have, vacation_values(vac))
    return _item("vacation", vac.address, vac, diffs)
