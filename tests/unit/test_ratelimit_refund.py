"""The limits a message counts against (``core.ratelimit.applicable``), shared by
policyd (counting at END-OF-MESSAGE) and the milter (taking refused mail back out)."""

from __future__ import annotations

from mailwarden.core import ratelimit
from mailwarden.core.ratelimit import Limit

ROWS = [
    ("example.test", "hour", 5, 0),
    ("example.test", "day", 10, 100),
    ("alice@example.test", "hour", 50, 0),
    ("carol@example.test", "hour", 0, 0),  # carol's own row: unlimited per hour
    ("client:192.0.2.0/24", "hour", 100, 0),
    ("client:192.0.2.128/25", "hour", 7, 0),
    ("client:2001:db8::/32", "day", 0, 9),
]


def test_login_own_row_wins_over_its_domain_per_period() -> None:
    assert ratelimit.applicable(ROWS, "alice@example.test", "") == [
        Limit("login:alice@example.test", "day", 10, 100),
        Limit("login:alice@example.test", "hour", 50, 0),
    ]


def test_domain_default_is_counted_per_mailbox() -> None:
    bob = ratelimit.applicable(ROWS, "bob@example.test", "")
    assert [lim.key for lim in bob] == ["login:bob@example.test"] * 2
    assert [(lim.period, lim.max_messages) for lim in bob] == [("day", 10), ("hour", 5)]


def test_unlimited_rows_are_left_out() -> None:
    assert ratelimit.applicable(ROWS, "carol@example.test", "") == [
        Limit("login:carol@example.test", "day", 10, 100)
    ]
    assert ratelimit.applicable(ROWS, "dan@elsewhere.test", "") == []


def test_client_counted_per_address_under_the_longest_prefix() -> None:
    assert ratelimit.applicable(ROWS, "", "192.0.2.200") == [
        Limit("client:192.0.2.200", "hour", 7, 0)
    ]
    assert ratelimit.applicable(ROWS, "", "192.0.2.1") == [
        Limit("client:192.0.2.1", "hour", 100, 0)
    ]
    assert ratelimit.applicable(ROWS, "", "2001:DB8::1") == [
        Limit("client:2001:db8::1", "day", 0, 9)
    ]
    assert ratelimit.applicable(ROWS, "", "198.51.100.1") == []
    assert ratelimit.applicable(ROWS, "", "unknown") == []


def test_login_and_client_both_apply() -> None:
    keys = [lim.key for lim in ratelimit.applicable(ROWS, "bob@example.test", "192.0.2.9")]
    assert keys == ["login:bob@example.test"] * 2 + ["client:192.0.2.9"]
