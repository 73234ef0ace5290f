"""Table tests for core.relaynet: parsing relay entries and matching clients."""

from __future__ import annotations

import pytest

from mailwarden.core.relaynet import matches, parse_client, parse_network
from mailwarden.errors import UsageError


@pytest.mark.parametrize(
    ("text", "stored", "adjusted"),
    [
        ("192.0.2.7", "192.0.2.7", False),
        ("192.0.2.7/32", "192.0.2.7", False),
        ("192.0.2.0/24", "192.0.2.0/24", False),
        ("192.0.2.7/24", "192.0.2.0/24", True),
        (" 10.0.0.0/8 ", "10.0.0.0/8", False),
        ("2001:DB8::1", "2001:db8::1", False),
        ("2001:db8::1/128", "2001:db8::1", False),
        ("2001:db8:0:0::/32", "2001:db8::/32", False),
        ("2001:db8::1/64", "2001:db8::/64", True),
        ("::ffff:192.0.2.7", "192.0.2.7", False),
        ("::1", "::1", False),
        ("140.175.165.*", "140.175.165.*", False),
        ("140.175.*.*", "140.175.*.*", False),
        ("10.*.*.*", "10.*.*.*", False),
        ("0.0.0.0/1", "0.0.0.0/1", False),
    ],
)
def test_parse_network_accepts(text: str, stored: str, adjusted: bool) -> None:
    parsed = parse_network(text)
    assert parsed.text == stored
    assert parsed.adjusted is adjusted


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "example.com",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4/33",
        "2001:db8::/129",
        "1.2.3.4/-1",
        "010.1.2.3",
        "1.2.3.4 5",
        "fe80::1%eth0",
        "0.0.0.0/0",
        "::/0",
        "*.*.*.*",
        "10.*.3.*",
        "*.1.2.3",
        "10.1.2.3.*",
        "10.*",
        "10.**.*.*",
        "01.*.*.*",
        "300.*.*.*",
        "1.2.3.4'; DROP TABLE relay_networks; --",
    ],
)
def test_parse_network_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="invalid network"):
        parse_network(text)


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("IPv6:2001:db8::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("unknown", None),
        ("", None),
        ("192.0.2.300", None),
    ],
)
def test_parse_client(client: str, expected: str | None) -> None:
    got = parse_client(client)
    assert (None if got is None else str(got)) == expected


NETS = ["192.0.2.0/24", "198.51.100.7", "140.175.165.*", "10.*.*.*", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("client", "networks", "expected"),
    [
        ("192.0.2.1", NETS, True),
        ("192.0.2.255", NETS, True),
        ("192.0.3.0", NETS, False),
        ("198.51.100.7", NETS, True),
        ("198.51.100.8", NETS, False),
        ("140.175.165.9", NETS, True),
        ("140.175.166.9", NETS, False),
        ("10.255.0.1", NETS, True),
        ("11.0.0.1", NETS, False),
        ("2001:db8:1::5", NETS, True),
        ("2001:db9::5", NETS, False),
        # IPv4-mapped IPv6 clients compare as IPv4, both against CIDR and wildcards
        ("::ffff:192.0.2.9", NETS, True),
        ("::ffff:140.175.165.1", NETS, True),
        ("::ffff:203.0.113.1", NETS, False),
        # a mapped entry matches the plain IPv4 client
        ("192.0.2.7", ["::ffff:192.0.2.7"], True),
        # families never mix: 0.0.0.x is not ::x
        ("::1", ["0.0.0.0/8"], False),
        ("::1", ["::1"], True),
        ("fe80::1%eth0", ["fe80::/10"], True),
        # no entries, or an unparseable client: no relay
        ("192.0.2.1", [], False),
        ("unknown", NETS, False),
        ("", NETS, False),
        # damaged or open-relay rows are skipped, never matched
        ("192.0.2.1", ["garbage", "0.0.0.0/0", "*.*.*.*"], False),
        ("192.0.2.1", ["garbage", "192.0.2.1"], True),
    ],
)
def test_matches(client: str, networks: list[str], expected: bool) -> None:
    assert matches(client, networks) is expected


def test_matches_accepts_any_iterable() -> None:
    assert matches("10.1.1.1", (n for n in ["10.*.*.*"]))
