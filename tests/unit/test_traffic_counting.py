"""Who counts traffic, and what (``mailwarden.accounting``), on the in-memory store.

``[traffic] counter`` picks one counter per direction so nothing is counted twice: the
milter ("milter", the default) or the delivery core (in) plus policyd (out) ("daemons").
The delivery core counts a message once per body and domain, on delivery; policyd counts
``out`` at END-OF-MESSAGE for a login's accepted mail. A real Maildir, a fake store.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mailwarden import accounting
from mailwarden.config import MailSettings, Settings, TrafficSettings, from_dict
from mailwarden.core.spamsettings import Layer
from mailwarden.delivery.body import Body
from mailwarden.delivery.deliver import Deliverer
from mailwarden.errors import ConfigError
from mailwarden.policyd.cache import TTLCache
from mailwarden.policyd.checks import Engine
from mailwarden.policyd.protocol import Request
from mailwarden.policyd.state import Transactions
from mailwarden.store.facts import TrafficMessage
from tests.unit.fakestore import FakeStore
from tests.unit.test_delivery_deliver import Recorder, Submitter

D, ALIAS, OTHER = "example.test", "alias.test", "other.test"
ALICE, BOB = f"alice@{D}", f"bob@{D}"
NOW = 1_700_000_000  # 2023-11-14 UTC
DAY = "2023-11-14"
MSG = b"From: x@far.test\nTo: alice@example.test\nSubject: Hi\n\nHello\n"
SPAM = b"X-Spam-Flag: YES\nX-Spam-Score: 20\n" + MSG


@pytest.mark.parametrize(
    ("counter", "program", "counts"),
    [
        ("milter", "milter", True),
        ("milter", "delivery", False),
        ("milter", "policyd", False),
        ("daemons", "milter", False),
        ("daemons", "delivery", True),
        ("daemons", "policyd", True),
        ("daemons", "other", False),
    ],
)
def test_exactly_one_counter_per_mode(counter: str, program: str, counts: bool) -> None:
    assert accounting.counts(counter, program) is counts


def test_counter_setting_is_checked() -> None:
    assert from_dict({}).traffic.counter == "milter"  # an upgrade keeps the milter's counts
    assert from_dict({"traffic": {"counter": "daemons"}}).traffic.counter == "daemons"
    with pytest.raises(ConfigError, match=r"traffic\.counter must be one of milter, daemons"):
        from_dict({"traffic": {"counter": "both"}})


@pytest.mark.parametrize(
    ("sender", "login", "size", "expected"),
    [
        ("alice@example.test", "alice@example.test", 10, TrafficMessage(DAY, 10, (), D)),
        ("<Alice@Example.TEST>", "alice", 10, TrafficMessage(DAY, 10, (), D)),
        ("alice@example.test", "", 10, None),  # no login: the sender is unproven
        ("", "alice@example.test", 10, None),  # a bounce has no sender domain
        ("alice@example.test", "a", -1, TrafficMessage(DAY, 0, (), D)),  # no size= sent
    ],
)
def test_outbound(sender: str, login: str, size: int, expected: TrafficMessage | None) -> None:
    assert accounting.outbound(sender, login, size, DAY) == expected


def test_the_milter_view() -> None:
    msg = accounting.message(
        ["<A@Example.test>", "<b@alias.test>", "<x>"], "<s@o.test>", True, 5, DAY
    )
    assert msg == TrafficMessage(DAY, 5, ("alias.test", "example.test"), "o.test")
    assert accounting.utc_day(NOW) == DAY


def fake_store() -> FakeStore:
    store = FakeStore()
    store.add_domain(D)
    store.add_domain(ALIAS, "alias", alias_of=D)
    store.add_domain(OTHER)
    store.add_mailbox(ALICE)
    store.add_mailbox(BOB)
    store.add_mailbox(f"carol@{OTHER}")
    store.set_spam(BOB, Layer("discard", 5.0))
    return store


def settings(root: Path, counter: str) -> Settings:
    mail = MailSettings(root=str(root), uid=-1, gid=-1)
    return Settings(mail=mail, traffic=TrafficSettings(counter=counter))


def deliverer(root: Path, store: FakeStore, counter: str) -> Deliverer:
    return Deliverer(settings(root, counter), store, Recorder(), Submitter())  # type: ignore[arg-type]


def today_row(store: FakeStore, domain: str = D) -> list[int]:
    return store.traffic.get((domain, accounting.utc_day()), [0, 0, 0, 0])


def test_delivery_counts_in_once_per_message_and_domain(tmp_path: Path) -> None:
    store = fake_store()
    lda = deliverer(tmp_path, store, "daemons")
    body = Body.of(MSG)  # lmtpd: one Body for every recipient of one LMTP DATA
    for rcpt in (ALICE, f"alice+x@{D}", BOB, f"carol@{OTHER}", f"nobody@{D}"):
        lda.deliver("x@far.test", rcpt, body)
    assert today_row(store) == [1, len(MSG), 0, 0]  # alice, alice+x, bob (discarded): once
    assert today_row(store, OTHER) == [1, len(MSG), 0, 0]
    lda.deliver("x@far.test", ALICE, MSG)  # the next message (the pipe LDA: bytes each time)
    assert today_row(store) == [2, 2 * len(MSG), 0, 0]


def test_delivery_counts_nothing_refused_or_in_milter_mode(tmp_path: Path) -> None:
    store = fake_store()
    lda = deliverer(tmp_path, store, "daemons")
    assert lda.deliver("x@far.test", f"nobody@{D}", MSG).dsn == "5.1.1"
    assert store.traffic == {}
    milter_mode = deliverer(tmp_path, store, "milter")
    assert milter_mode.deliver("x@far.test", ALICE, MSG).ok
    assert store.traffic == {}


def test_delivery_counts_discarded_spam(tmp_path: Path) -> None:
    store = fake_store()
    v = deliverer(tmp_path, store, "daemons").deliver("x@far.test", BOB, SPAM)
    assert v.text == "Discarded as spam"
    assert today_row(store) == [1, len(SPAM), 0, 0]


def engine(store: FakeStore, counter: str) -> Engine:
    s = Settings(traffic=TrafficSettings(counter=counter))
    sink = accounting.TrafficNow(store)  # the daemon writes behind; here at once
    return Engine(s, store, TTLCache(60, 100), Transactions(), clock=lambda: NOW, traffic=sink)


def end_of_message(eng: Engine, **attrs: str) -> str:
    base = {
        "request": "smtpd_access_policy",
        "protocol_state": "END-OF-MESSAGE",
        "instance": "i1",
        "client_address": "203.0.113.9",
        "sender": ALICE,
        "size": "1234",
    }
    req = Request({**base, **attrs})
    decision = eng.store_pass(req, NOW)
    eng.apply(req, decision)
    return decision.verdict.dsn


@pytest.mark.parametrize(
    ("counter", "attrs", "out"),
    [
        ("daemons", {"sasl_username": ALICE}, [0, 0, 1, 1234]),
        ("daemons", {"sasl_username": ALICE, "sender": f"alice@{ALIAS}"}, [0, 0, 1, 1234]),
        ("daemons", {"sasl_username": "x", "sender": "a@far.test"}, None),  # not ours
        ("daemons", {}, None),  # no login: inbound mail, counted at delivery
        ("daemons", {"sasl_username": ALICE, "protocol_state": "RCPT"}, None),
        ("milter", {"sasl_username": ALICE}, None),  # the milter counts instead
    ],
)
def test_policyd_counts_out_at_end_of_message(
    counter: str, attrs: dict[str, str], out: list[int] | None
) -> None:
    store = fake_store()
    end_of_message(engine(store, counter), **attrs)
    assert store.traffic.get((D, DAY)) == out


def test_policyd_counts_no_refused_message() -> None:
    store = fake_store()
    store.domains[D].max_message_bytes = 100
    eng = engine(store, "daemons")
    assert end_of_message(eng, sasl_username=ALICE, recipient=f"carol@{OTHER}").startswith("2")
    store.traffic.clear()
    eng.transactions.get("i2").accept(ALICE, False)  # a recipient in D, whose limit is 100
    assert end_of_message(eng, sasl_username=ALICE, instance="i2") == "5.3.4"
    assert store.traffic == {}


def test_recorder_writes_behind_and_at_close() -> None:
    store = fake_store()
    seen: list[int] = []
    rec = accounting.TrafficRecorder(store, lambda t: seen.append(t.messages_out), 3600)
    for _ in range(3):
        rec.add(TrafficMessage(DAY, 10, (), D))
    assert store.traffic == {}
    rec.close()
    assert store.traffic[D, DAY] == [0, 0, 3, 30]
    assert seen == [3]
    rec.add(TrafficMessage(DAY, 10, (), D))  # after close: dropped
    rec.close()
    assert store.traffic[D, DAY] == [0, 0, 3, 30]


def test_a_store_failure_costs_counts_not_mail(caplog: pytest.LogCaptureFixture) -> None:
    class Down(FakeStore):
        def add_traffic(self, messages: object) -> object:  # type: ignore[override]
            raise OSError("database is down")

    accounting.TrafficNow(Down()).add(TrafficMessage(DAY, 1, (D,)))
    assert "traffic of 1 message(s) not recorded: database is down" in caplog.text


def test_settings_dataclass_default() -> None:
    assert dataclasses.asdict(TrafficSettings()) == {"counter": "milter"}
