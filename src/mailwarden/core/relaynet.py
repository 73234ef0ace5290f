"""Relay networks: parse what an operator types, and decide whether a client is inside.

What it does
    ``parse_network`` validates and normalises one relay-network entry as the admin CLI
    stores it; ``matches`` answers "may this client IP relay?" for the policy daemon,
    given the active entries from ``store.relay.active_networks``.

Accepted forms
    ``192.0.2.7``, ``2001:db8::1``          one host (stored bare)
    ``192.0.2.0/24``, ``2001:db8::/32``     a CIDR network (stored as network/prefix;
                                            host bits set are cleared and reported)
    ``140.175.165.*``, ``10.*.*.*``         a Sambar-style wildcard: four dotted parts,
                                            ``*`` only in trailing positions, stored as
                                            given; it matches like ``/24``, ``/8`` ...
    Anything covering every address (``0.0.0.0/0``, ``::/0``, ``*.*.*.*``) is refused: it
    would make an open relay. Zone ids (``fe80::1%eth0``) are refused in entries.

Client addresses
    as Postfix (``client_address``) and Exim (``$sender_host_address``) give them. An
    IPv4-mapped IPv6 client (``::ffff:192.0.2.7``, what a dual-stack socket reports) is
    compared as its IPv4 address; a zone id on a client is ignored. A client that is not
    an IP address (``unknown``) matches nothing, and an entry that cannot be parsed (a
    damaged row) is skipped, so a bad value can only refuse relaying, never grant it.

Errors: ``UsageError`` from ``parse_network``/``parse_cidr`` naming the bad value.
Pure: no I/O, no clock, no mutable module state.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailwarden.errors import UsageError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_OCTET = re.compile(r"^(?:0|[1-9][0-9]{0,2})$")  # no leading zeros: 010 could mean octal


@dataclass(frozen=True, slots=True)
class Parsed:
    """A normalised entry; ``adjusted`` says host bits were cleared (tell the operator)."""

    text: str
    network: IPNetwork
    adjusted: bool = False


def parse_cidr(text: str) -> Parsed:
    """An IP address or CIDR network in canonical form (a single host is stored bare)."""
    raw = text.strip()
    if not raw or "%" in raw or any(ch.isspace() for ch in raw):
        raise _bad(text, "expected an IPv4/IPv6 address or CIDR network (no zone id)")
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise _bad(text, "expected an IPv4/IPv6 address or CIDR network") from None
    net = _unmap_network(net)
    adjusted = "/" in raw and net.network_address != _address_part(raw)
    return Parsed(_canonical(net), net, adjusted)


def parse_network(text: str) -> Parsed:
    """A relay entry: CIDR/address or ``a.b.c.*`` wildcard; refuses open-relay entries."""
    parsed = _parse_wildcard(text) if "*" in text else parse_cidr(text)
    if parsed.network.prefixlen == 0:
        raise _bad(text, "it covers every address and would make an open relay")
    return parsed


def parse_client(text: str) -> IPAddress | None:
    """A client address as the MTA reports it, IPv4-mapped unwrapped; None if not an IP."""
    raw = text.strip().removeprefix("[").removesuffix("]")
    if raw.lower().startswith("ipv6:"):
        raw = raw[5:]
    raw = raw.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def entry_network(entry: str) -> IPNetwork | None:
    """The network a stored entry covers, or None for an entry that does not parse."""
    try:
        return parse_network(entry).network
    except UsageError:
        return None


def contains(network: IPNetwork, client: IPAddress) -> bool:
    return network.version == client.version and client in network


def matches(client_ip: str, networks: Iterable[str]) -> bool:
    """True if ``client_ip`` lies inside any of ``networks`` (stored entries)."""
    client = parse_client(client_ip)
    if client is None:
        return False
    for entry in networks:
        net = entry_network(entry)
        if net is not None and contains(net, client):
            return True
    return False


def _parse_wildcard(text: str) -> Parsed:
    raw = text.strip()
    parts = raw.split(".")
    if len(parts) != 4:
        raise _bad(text, "a wildcard needs four dotted parts, e.g. 140.175.165.*")
    fixed = 0
    while fixed < 4 and parts[fixed] != "*":
        fixed += 1
    if any(p != "*" for p in parts[fixed:]):
        raise _bad(text, "'*' may only stand for the trailing parts, e.g. 10.*.*.*")
    if not all(_OCTET.match(p) and int(p) <= 255 for p in parts[:fixed]):
        raise _bad(text, "each part must be a number 0-255 without leading zeros, or '*'")
    base = ".".join(parts[:fixed] + ["0"] * (4 - fixed))
    return Parsed(raw, ipaddress.IPv4Network(f"{base}/{8 * fixed}"))


def _unmap_network(net: IPNetwork) -> IPNetwork:
    """``::ffff:192.0.2.7/128`` -> ``192.0.2.7/32``: mapped clients are compared as IPv4."""
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/{net.prefixlen - 96}")
    return net


def _address_part(raw: str) -> IPAddress:
    net = _unmap_network(ipaddress.ip_network(raw.split("/", 1)[0]))
    return net.network_address


def _canonical(net: IPNetwork) -> str:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _bad(text: str, reason: str) -> UsageError:
    shown = repr(text) if len(text) <= 60 else repr(text[:57]) + "..."
    return UsageError(f"invalid network {shown}: {reason}")
