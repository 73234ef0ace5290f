"""Spam settings and allow/block lists: how the global, domain and mailbox layers combine.

What it does
    ``effective`` layers the spam treatment (action above a score ``threshold``) from the
    global row, the recipient's domain row and the mailbox row; ``list_decision`` says
    whether the allow/block lists of those layers allow or block a sender/client
    (``access_decision`` on the ``AccessLists`` of one recipient). The delivery agent,
    the policy daemon and the milter feed them what the store reads (``Layers``,
    ``AccessLists``); the store itself decides nothing.

Layering (both functions)
    Start from global, then the domain, then the mailbox; a lower layer overrides what
    it sets (a NULL setting means "inherit"). An ``enforce`` flag on a layer means the
    layers below it cannot override it: with global enforced the domain and mailbox
    settings are ignored; with the domain enforced the mailbox settings are ignored.
    For the lists, an enforced layer's decision is final (its block cannot be undone by
    a lower allow, nor its allow by a lower block); where it has no matching entry the
    lower layers still decide.

Patterns (``parse_pattern``; ``PATTERN_FORMS`` is the one line that lists them)
    ``user@example.com``   that sender (also with a ``+extension``)
    ``@example.com``       every sender of that domain, not of its subdomains;
                           ``*@example.com`` is accepted and stored as ``@example.com``
    ``@*.example.com``     every sender of a subdomain of example.com, at any depth, not
                           of example.com itself; ``*.example.com`` and
                           ``*@*.example.com`` are stored this way
    ``192.0.2.7``, ``192.0.2.0/24``, ``2001:db8::/32``, ``192.0.2.*``
                           a client address or network (a wildcard is stored as CIDR)
    Any other ``*`` (``user@*``, ``spam*@example.com``) is refused. Rows stored before
    these forms were checked are matched the same way (``*@example.com`` as
    ``@example.com``); a row in no accepted form matches nothing and ``spam lists``
    says so (``stored_pattern_note``).

Matching within one layer
    On the sender side the most specific entry wins (address, then the address without
    its ``+extension``, then ``@domain``, then ``@*.parent`` from the nearest parent
    out); on the client side the longest prefix wins. If the sender side and the client
    side disagree, block wins: a client address cannot be forged, a sender can. The null
    sender ``<>`` matches no sender entry.

Actions
    ``tag`` (add headers only), ``folder`` (file into the junk folder), ``discard``,
    ``reject`` (refuse at SMTP time); each applies when the score reaches the threshold.

Pure: no I/O, no clock, no mutable module state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mailwarden.address import parse_source
from mailwarden.core import relaynet
from mailwarden.errors import UsageError
from mailwarden.verdict import Verdict

ACTIONS = ("tag", "folder", "discard", "reject")
LAYERS = ("global", "domain", "mailbox")
ALLOW, BLOCK = "allow", "block"
# What a ``block`` decision answers at RCPT (policyd).
BLOCKED = Verdict("5.7.1", "Access denied by the recipient's block list", code=550)
# What a global row with NULL fields falls back to (the schema seeds these values).
DEFAULT_ACTION = "folder"
DEFAULT_THRESHOLD = 5.0


@dataclass(frozen=True, slots=True)
class Layer:
    """One row of spam settings; None fields inherit from the layer above."""

    action: str | None = None
    threshold: float | None = None
    enforce: bool = False


@dataclass(frozen=True, slots=True)
class Effective:
    """The settings that apply; ``source`` is the lowest layer that supplied a value,
    ``locked_by`` the layer whose ``enforce`` stopped the layers below (or None)."""

    action: str
    threshold: float
    source: str
    locked_by: str | None = None


def effective(global_: Layer, domain: Layer | None, mailbox: Layer | None) -> Effective:
    """Combine the three layers (``None`` = no row for that layer)."""
    action = global_.action or DEFAULT_ACTION
    threshold = DEFAULT_THRESHOLD if global_.threshold is None else global_.threshold
    source, locked_by = "global", None
    below: tuple[tuple[str, Layer | None], ...] = (("domain", domain), ("mailbox", mailbox))
    enforced = "global" if global_.enforce else None
    for name, layer in below:
        if layer is None:
            continue
        if enforced is not None:
            locked_by = enforced
            break
        if layer.action is not None:
            action, source = layer.action, name
        if layer.threshold is not None:
            threshold, source = layer.threshold, name
        if layer.enforce:
            enforced = name
    return Effective(action, float(threshold), source, locked_by)


@dataclass(frozen=True, slots=True)
class Layers:
    """The settings rows that apply to one recipient; None where a layer has no row."""

    global_: Layer
    domain: Layer | None = None
    mailbox: Layer | None = None

    @property
    def enforce_flags(self) -> dict[str, bool]:
        return {name: name in self.enforced for name in LAYERS}

    @property
    def enforced(self) -> frozenset[str]:
        """The layers whose ``enforce`` flag is set."""
        rows = (("global", self.global_), ("domain", self.domain), ("mailbox", self.mailbox))
        return frozenset(name for name, row in rows if row is not None and row.enforce)

    def effective(self) -> Effective:
        return effective(self.global_, self.domain, self.mailbox)


@dataclass(frozen=True, slots=True)
class AccessLists:
    """The allow/block entries of the layers that apply to one recipient (global, its
    domain, its mailbox) as ``(layer, kind, pattern)``, and the enforced layers."""

    entries: tuple[tuple[str, str, str], ...] = ()
    enforced: frozenset[str] = frozenset()


def access_decision(
    lists: AccessLists, sender: str, client_ip: str, *, delimiter: str = "+"
) -> str | None:
    """``"allow"``, ``"block"`` or None for mail from ``sender``/``client_ip`` to the
    recipient whose ``lists`` these are: the one access rule of policyd and the milter."""
    if not lists.entries:
        return None
    flags = {name: name in lists.enforced for name in LAYERS}
    return list_decision(sender, client_ip, by_layer(lists.entries), flags, delimiter=delimiter)


def by_layer(entries: Iterable[tuple[str, str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Group ``(layer, kind, pattern)`` rows as ``list_decision`` takes them."""
    grouped: dict[str, list[tuple[str, str]]] = {name: [] for name in LAYERS}
    for layer, kind, pattern in entries:
        grouped.setdefault(layer, []).append((kind, pattern))
    return grouped


def list_decision(
    sender: str,
    client_ip: str,
    entries_by_layer: Mapping[str, Iterable[tuple[str, str]]],
    enforce_flags: Mapping[str, bool],
    *,
    delimiter: str = "+",
) -> str | None:
    """``"allow"``, ``"block"`` or None (no entry matches) for this sender and client."""
    result: str | None = None
    for name in LAYERS:
        decision = layer_decision(sender, client_ip, entries_by_layer.get(name, ()), delimiter)
        if decision is None:
            continue
        result = decision
        if enforce_flags.get(name, False):
            return decision
    return result


def layer_decision(
    sender: str, client_ip: str, entries: Iterable[tuple[str, str]], delimiter: str = "+"
) -> str | None:
    """The decision of one layer's entries (see "Matching within one layer")."""
    names = _sender_keys(sender, delimiter)
    client = relaynet.parse_client(client_ip)
    by_sender: tuple[int, str] | None = None  # (specificity, kind)
    by_client: tuple[int, str] | None = None  # (prefix length, kind)
    for kind, pattern in entries:
        key = _match_key(pattern)
        if key in names:
            rank = (names[key], kind)
            by_sender = _stronger(by_sender, rank)
        elif "@" not in key and client is not None:
            net = _pattern_network(key)
            if net is not None and relaynet.contains(net, client):
                by_client = _stronger(by_client, (net.prefixlen, kind))
    kinds = {hit[1] for hit in (by_sender, by_client) if hit is not None}
    if BLOCK in kinds:
        return BLOCK
    return ALLOW if ALLOW in kinds else None


PATTERN_FORMS = (
    "user@domain, @domain (or *@domain), @*.domain (its subdomains), "
    "or a client IP, CIDR or a.b.c.* wildcard"
)


def parse_pattern(text: str) -> str:
    """Normalise a list pattern to its stored form (see "Patterns"); ``UsageError``
    naming ``PATTERN_FORMS`` for anything else."""
    raw = text.strip().removeprefix("<").removesuffix(">").strip()
    try:
        if "@" in raw or raw.startswith("*."):
            return _sender_pattern(raw)
        if not raw:
            raise UsageError("empty")
        if "*" in raw:  # a.b.c.* as relay entries take it, stored as the CIDR it means
            raw = str(relaynet.parse_network(raw).network)
        parsed = relaynet.parse_cidr(raw)
    except UsageError:
        raise UsageError(f"invalid pattern {text!r}: use {PATTERN_FORMS}") from None
    if parsed.network.prefixlen == 0:
        raise UsageError(f"invalid pattern {text!r}: it covers every client address")
    return parsed.text


def _sender_pattern(raw: str) -> str:
    """``user@domain``, ``@domain`` or ``@*.domain`` from any accepted spelling."""
    lowered = raw.lower()
    if lowered.startswith("*@"):
        lowered = lowered[1:]  # *@domain, *@*.domain
    elif lowered.startswith("*."):
        lowered = "@" + lowered  # *.domain
    if lowered.startswith("@*."):
        return "@*." + parse_source("@" + lowered[3:]).domain
    if "*" in lowered:
        raise UsageError("wildcard")
    addr = parse_source(lowered)
    return f"@{addr.domain}" if not addr.local else str(addr)


def stored_pattern_note(pattern: str) -> str | None:
    """For ``spam lists``: None when a stored row matches as written; otherwise what it
    matches as, or that it matches nothing (a row stored before patterns were checked)."""
    try:
        form = parse_pattern(pattern)
    except UsageError:
        return f"matches nothing: not one of {PATTERN_FORMS}"
    return None if form == pattern else f"matches as {form}"


def _stronger(old: tuple[int, str] | None, new: tuple[int, str]) -> tuple[int, str]:
    """The more specific hit; on a tie (cannot happen within one scope) block wins."""
    if old is None or new[0] > old[0] or (new[0] == old[0] and new[1] == BLOCK):
        return new
    return old


def _match_key(pattern: str) -> str:
    """A stored pattern as ``_sender_keys`` spells it (old ``*@domain`` rows included)."""
    key = pattern.strip().lower()
    return key[1:] if key.startswith("*@") else key


def _sender_keys(sender: str, delimiter: str) -> dict[str, int]:
    """Patterns that match ``sender``, mapped to their specificity (higher wins)."""
    bare = sender.strip().removeprefix("<").removesuffix(">").lower()
    if bare.count("@") != 1:
        return {}
    local, domain = bare.split("@")
    if not local or not domain:
        return {}
    keys = {f"@{domain}": 1, bare: 3}
    cut = next((i for i, ch in enumerate(local) if ch in delimiter), -1) if delimiter else -1
    if cut > 0:
        keys[f"{local[:cut]}@{domain}"] = 2
    labels = domain.split(".")
    for i in range(1, len(labels)):  # @*.parent: the nearest parent ranks highest
        keys["@*." + ".".join(labels[i:])] = -i
    return keys


def _pattern_network(pattern: str) -> relaynet.IPNetwork | None:
    try:
        return relaynet.parse_cidr(pattern).network
    except UsageError:  # a damaged row decides nothing
        return None
