"""The policy checks on the in-memory store: every verdict with its exact codes, no SQL.

``policyd.checks.Engine`` takes a ``store.facts.PolicyStore``; here it is
``tests.unit.fakestore.FakeStore`` (its answers are pinned to the SQL store's by
test_store_facts.py). Each case names the RFC 3463 status and the SMTP code Postfix gets
(``action=<code> <status> <text>``), as DESIGN §4 lists them.
"""

from __future__ import annotations

import dataclasses

import pytest

from mailwarden.config import MailSettings, PolicySettings, Settings
from mailwarden.policyd.cache import TTLCache
from mailwarden.policyd.checks import Decision, Engine, NeedStore
from mailwarden.policyd.protocol import Request, action
from mailwarden.policyd.state import Transactions
from tests.unit.fakestore import FakeStore

NOW = 1_700_000_000
D = "example.test"
ALICE, BOB, CAROL, DAVE = (f"{u}@{D}" for u in ("alice", "bob", "carol", "dave"))
OUTSIDE = "203.0.113.9"


@pytest.fixture
def store() -> FakeStore:
    fake = FakeStore()
    fake.add_domain(D, max_message_bytes=10_000)
    fake.add_domain("alias.test", "alias", alias_of=D)
    fake.add_domain("relay.test", "relay")
    fake.add_domain("catch.test")
    fake.add_mailbox(ALICE, quota_bytes=1000, quota_messages=10)
    fake.add_mailbox(BOB, services=6, forwards=["b@elsewhere.test"])  # forwards only: fine
    fake.add_mailbox(CAROL, services=6)  # no mail service
    fake.add_mailbox(DAVE, active=False)
    fake.add_alias(f"info@{D}", ALICE)
    fake.add_alias("@catch.test", ALICE)
    fake.grant(ALICE, "boss@example.test")
    fake.add_relay("192.0.2.0/24")
    fake.list_entry("global", "block", "@bad.test")
    fake.list_entry(ALICE, "allow", "friend@bad.test")
    fake.set_usage(ALICE, 900, 3)
    return fake


def engine_for(store: FakeStore, **mail: object) -> Engine:
    settings = Settings(mail=dataclasses.replace(MailSettings(), **mail))  # type: ignore[arg-type]
    return Engine(settings, store, TTLCache(60, 1000), Transactions(), clock=lambda: NOW)


def request(state: str = "RCPT", /, **attrs: str | int) -> Request:
    base = {
        "request": "smtpd_access_policy",
        "protocol_state": state,
        "instance": "i1",
        "client_address": OUTSIDE,
        "sender": "someone@other.test",
    }
    return Request({**base, **{k: str(v) for k, v in attrs.items()}})


def decide(engine: Engine, req: Request) -> Decision:
    decision = engine.store_pass(req, NOW)
    engine.apply(req, decision)
    return decision


def answer(engine: Engine, **attrs: str | int) -> str:
    """The ``action=`` value Postfix gets for one RCPT (``DUNNO`` for go on)."""
    return action(decide(engine, request(**attrs)).verdict)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        # relay (5.7.1, 554): a foreign recipient from an unknown client, no login
        ({"recipient": "x@elsewhere.test"}, "554 5.7.1 "),
        ({"recipient": "x@elsewhere.test", "client_address": "192.0.2.7"}, "DUNNO"),
        ({"recipient": "x@elsewhere.test", "sasl_username": ALICE, "sender": ALICE}, "DUNNO"),
        ({"recipient": "x@relay.test"}, "DUNNO"),  # backup MX: no mailbox list
        # recipient (5.1.1 unknown, 5.2.1 no mail service; both 550)
        ({"recipient": f"nobody@{D}"}, "550 5.1.1 Recipient address rejected: User unknown"),
        ({"recipient": DAVE}, "550 5.1.1 Recipient address rejected: User unknown"),
        ({"recipient": CAROL}, "550 5.2.1 Recipient address rejected: this mailbox does not"),
        ({"recipient": BOB}, "DUNNO"),  # forwards without a copy: stores nothing
        ({"recipient": f"alice+tag@{D}"}, "DUNNO"),
        ({"recipient": f"info@{D}"}, "DUNNO"),
        ({"recipient": "alice@alias.test"}, "DUNNO"),
        ({"recipient": "anyone@catch.test"}, "DUNNO"),
        # access (5.7.1, 550): the global block list; the mailbox's allow wins below it
        ({"recipient": ALICE, "sender": "spam@bad.test"}, "550 5.7.1 Access denied"),
        ({"recipient": ALICE, "sender": "friend@bad.test"}, "DUNNO"),
        ({"recipient": f"info@{D}", "sender": "friend@bad.test"}, "550 5.7.1 Access denied"),
        # send-as (5.7.1, 553): a login sends as itself, its aliases and its grants only
        ({"recipient": "x@elsewhere.test", "sasl_username": ALICE, "sender": BOB}, "553 5.7.1 "),
        ({"recipient": "x@elsewhere.test", "sasl_username": ALICE, "sender": f"info@{D}"}, "DUNNO"),
        (
            {"recipient": "x@else.test", "sasl_username": ALICE, "sender": "boss@example.test"},
            "DUNNO",
        ),
        # limits: SIZE= over the domain's limit (5.3.4, 552)
        ({"recipient": f"info@{D}", "size": 20_000}, "552 5.3.4 "),
        # quota (4.2.2, 452 by default): 900 of 1000 bytes used
        ({"recipient": ALICE, "size": 200}, "452 4.2.2 "),
        ({"recipient": ALICE, "size": 50}, "DUNNO"),
    ],
)
def test_rcpt_verdicts(store: FakeStore, attrs: dict[str, str | int], expected: str) -> None:
    got = answer(engine_for(store), **attrs)
    assert got.startswith(expected), got


def test_quota_is_permanent_when_configured(store: FakeStore) -> None:
    engine = engine_for(store, quota_full_tempfail=False)
    assert answer(engine, recipient=ALICE, size=200).startswith("552 5.2.2 ")


def test_checks_switched_off(store: FakeStore) -> None:
    settings = Settings(policy=PolicySettings(checks=("relay",)))
    engine = Engine(settings, store, TTLCache(60, 100), Transactions(), clock=lambda: NOW)
    assert answer(engine, recipient=f"nobody@{D}") == "DUNNO"
    assert answer(engine, recipient="x@elsewhere.test").startswith("554 5.7.1 ")


def test_allowed_by_every_recipient_is_passed_on_once_at_data(store: FakeStore) -> None:
    engine = engine_for(store)
    assert answer(engine, recipient=ALICE, sender="friend@bad.test") == "DUNNO"
    data = decide(engine, request("DATA", sender="friend@bad.test", recipient_count=1))
    assert action(data.verdict, state="DATA") == "PREPEND X-Mailwarden-Allowed: yes"


def test_rate_limit_counts_accepted_mail_and_refuses_with_450(store: FakeStore) -> None:
    store.set_limit(ALICE, "hour", messages=1)
    engine = engine_for(store)
    out = {"recipient": "x@elsewhere.test", "sasl_username": ALICE, "sender": ALICE}
    assert answer(engine, **out) == "DUNNO"
    eom = decide(engine, request("END-OF-MESSAGE", recipient_count=1, **out))
    assert eom.verdict.ok and [lim.key for lim in eom.counts] == [f"login:{ALICE}"]
    hour = NOW - NOW % 3600
    assert store.counters[f"login:{ALICE}", "hour", hour].messages == 1
    refused = answer(engine, instance="i2", **out)
    assert refused.startswith("450 4.7.1 Rate limit reached (1 messages per hour)"), refused


def test_warm_cache_decides_without_the_store(store: FakeStore) -> None:
    engine = engine_for(store)
    req = request(recipient=f"nobody@{D}")
    with pytest.raises(NeedStore):
        engine.cache_pass(req, NOW)  # cold: the store must be asked
    first = engine.store_pass(req, NOW)
    asked = store.queries
    again = engine.cache_pass(req, NOW)
    assert again.verdict == first.verdict and again.verdict.dsn == "5.1.1"
    assert store.queries == asked  # nothing asked of the store the second time


def test_a_store_failure_propagates_for_the_server_to_answer_4_3_0(store: FakeStore) -> None:
    from mailwarden.errors import StoreUnavailable

    def down(name: str) -> None:
        raise StoreUnavailable("database down")

    store.domain = down  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        engine_for(store).store_pass(request(recipient=ALICE), NOW)
