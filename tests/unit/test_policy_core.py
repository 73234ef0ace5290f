"""Table tests for the pure policy rules in mailwarden.core."""

from __future__ import annotations

import pytest

from mailwarden.core import limits, quotacheck, ratelimit, recipient, relay, sendas

NOW = 1_700_000_000  # 2023-11-14 22:13:20 UTC


@pytest.mark.parametrize(
    ("auth", "net", "kind", "ok"),
    [
        (False, False, None, False),
        (True, False, None, True),
        (False, True, None, True),
        (False, False, "local", True),
        (False, False, "alias", True),
        (False, False, "relay", True),
        (False, False, "bogus", False),
    ],
)
def test_relay(auth: bool, net: bool, kind: str | None, ok: bool) -> None:
    v = relay.decide(relay.RelayFacts(auth, net, kind))
    assert v.ok is ok
    if not ok:
        assert (v.smtp_code, v.dsn) == (554, "5.7.1")


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (recipient.RecipientFacts("local", 1, True, True), "mailbox"),
        (recipient.RecipientFacts("local", None, True, True), "alias"),
        (recipient.RecipientFacts("local", None, False, True), "catchall"),
        (recipient.RecipientFacts("alias", None, False, False), "none"),
        (recipient.RecipientFacts("relay", None, False, False), "unchecked"),
        (recipient.RecipientFacts(None), "unchecked"),
    ],
)
def test_recipient(facts: recipient.RecipientFacts, expected: str) -> None:
    assert recipient.resolution(facts) == expected
    assert recipient.decide(facts).dsn == ("5.1.1" if expected == "none" else "2.0.0")


@pytest.mark.parametrize(
    ("qb", "qm", "ub", "um", "size", "full"),
    [
        (0, 0, 10**12, 10**6, 10**9, False),  # unlimited
        (100, 0, 99, 0, 0, False),
        (100, 0, 100, 0, 0, True),  # exactly at the limit
        (100, 0, 50, 0, 50, False),
        (100, 0, 50, 0, 51, True),
        (0, 10, 0, 9, 0, False),
        (0, 10, 0, 10, 0, True),
    ],
)
def test_quota(qb: int, qm: int, ub: int, um: int, size: int, full: bool) -> None:
    facts = quotacheck.QuotaFacts(qb, qm, ub, um, size)
    assert quotacheck.is_full(facts) is full
    assert quotacheck.decide(facts).dsn == ("4.2.2" if full else "2.0.0")
    assert quotacheck.decide(facts, tempfail=False).dsn == ("5.2.2" if full else "2.0.0")


OWNED = frozenset({"alice@example.test", "sales@example.test", "@shared.test"})


@pytest.mark.parametrize(
    ("sender", "ok"),
    [
        ("alice@example.test", True),
        ("Alice+x@EXAMPLE.test", True),
        ("sales@example.test", True),
        ("anyone@shared.test", True),
        ("", True),
        ("bob@example.test", False),
        ('"alice"@example.test', False),
        ("@a.test:alice@example.test", False),
        ("alice%example.test@evil.test", False),
    ],
)
def test_sendas(sender: str, ok: bool) -> None:
    v = sendas.decide("alice@example.test", sender, OWNED)
    assert v.ok is ok
    if not ok:
        assert (v.smtp_code, v.dsn) == (553, "5.7.1")


def test_sendas_unauthenticated_not_checked() -> None:
    assert sendas.decide("", "bob@example.test", OWNED).ok


@pytest.mark.parametrize(("already", "maximum", "ok"), [(0, 0, True), (4, 5, True), (5, 5, False)])
def test_recipients_limit(already: int, maximum: int, ok: bool) -> None:
    v = limits.recipients(already, maximum)
    assert v.ok is ok
    assert ok or (v.smtp_code, v.dsn) == (452, "4.5.3")


@pytest.mark.parametrize(
    ("size", "maximum", "ok"), [(0, 10, True), (10, 10, True), (11, 10, False), (10**9, 0, True)]
)
def test_message_size(size: int, maximum: int, ok: bool) -> None:
    v = limits.message_size(size, maximum)
    assert v.ok is ok
    assert ok or (v.smtp_code, v.dsn) == (552, "5.3.4")


def test_recipient_count_at_data() -> None:
    assert limits.recipient_count(5, 5).ok
    v = limits.recipient_count(6, 5)
    assert (v.smtp_code, v.dsn) == (550, "5.5.3")


def test_windows() -> None:
    assert ratelimit.window("hour", NOW) == (1699999200, 1700002800)
    assert ratelimit.window("day", NOW) == (1699920000, 1700006400)


def test_select_mailbox_overrides_domain_per_period() -> None:
    rows = [
        ("example.test", "day", 10, 0),
        ("example.test", "hour", 5, 0),
        ("alice@example.test", "hour", 50, 0),
        ("other.test", "hour", 1, 1),
    ]
    assert ratelimit.select(rows, "alice@example.test", "example.test") == {
        "day": (10, 0),
        "hour": (50, 0),
    }
    assert ratelimit.select(rows, "bob@example.test", "example.test") == {
        "day": (10, 0),
        "hour": (5, 0),
    }


def test_client_scope_most_specific() -> None:
    scopes = ["client:192.0.2.0/24", "client:192.0.2.128/25", "example.test", "client:bad"]
    assert ratelimit.client_scope(scopes, "192.0.2.200") == "client:192.0.2.128/25"
    assert ratelimit.client_scope(scopes, "192.0.2.1") == "client:192.0.2.0/24"
    assert ratelimit.client_scope(scopes, "198.51.100.1") is None
    assert ratelimit.client_scope(scopes, "unknown") is None


@pytest.mark.parametrize(
    ("limit", "usage", "new", "pending", "what"),
    [
        ((2, 0), (1, 0), True, 0, ""),
        ((2, 0), (2, 0), True, 0, "2 messages per hour"),
        ((2, 0), (2, 0), False, 1, ""),  # same message, its message already admitted
        ((0, 3), (0, 2), True, 0, ""),
        ((0, 3), (0, 2), False, 1, "3 recipients per hour"),
        ((0, 0), (99, 99), True, 0, ""),
    ],
)
def test_rate_decide(
    limit: tuple[int, int], usage: tuple[int, int], new: bool, pending: int, what: str
) -> None:
    lim = ratelimit.Limit("login:a@b.test", "hour", *limit)
    v = ratelimit.decide(
        [(lim, ratelimit.Usage(*usage))], new_message=new, pending=pending, now=NOW
    )
    if not what:
        assert v.ok
    else:
        assert (v.smtp_code, v.dsn) == (450, "4.7.1")
        assert what in v.text and "2023-11-14 23:00:00 UTC" in v.text
