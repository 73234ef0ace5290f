"""The sans-IO codec, the cache, the transaction table and the failure policy."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mailwarden import config
from mailwarden.metrics import PolicyMetrics
from mailwarden.policyd.cache import MISSING, TTLCache
from mailwarden.policyd.checks import Engine
from mailwarden.policyd.protocol import Decoder, ProtocolError, Request, action, encode
from mailwarden.policyd.server import PolicyServer
from mailwarden.policyd.state import Transactions
from mailwarden.store.db import Database
from mailwarden.store.sql import SqlStore
from mailwarden.verdict import OK, Verdict, tempfail
from tests.unit.test_policyd_server import exchange

REQ = b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@b.test\n\n"


def test_split_across_feeds() -> None:
    d = Decoder()
    out = []
    for i in range(len(REQ)):
        out += d.feed(REQ[i : i + 1])
    assert len(out) == 1 and out[0].recipient == "a@b.test" and not d.pending


def test_several_requests_in_one_feed_first_duplicate_wins() -> None:
    d = Decoder()
    reqs = d.feed(REQ + REQ.replace(b"\n\n", b"\nrecipient=x@y.test\n\n"))
    assert [r.recipient for r in reqs] == ["a@b.test", "a@b.test"]


def test_crlf_tolerated_and_missing_numbers_read_zero() -> None:
    (req,) = Decoder().feed(REQ.replace(b"\n", b"\r\n"))
    assert req.state == "RCPT" and req.size == 0 and req.recipient_count == 0


@pytest.mark.parametrize(
    "data",
    [
        b"protocol_state=RCPT\n\n",
        b"request=other\n\n",
        b"request=smtpd_access_policy\nnoequals\n\n",
        b"request=smtpd_access_policy\n=value\n\n",
        b"request=smtpd_access_policy\nsender=\xff\n\n",
        b"request=smtpd_access_policy\nsender=a\x00\n\n",
        b"x" * 9000,
        b"".join(b"a%d=1\n" % i for i in range(300)),
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        Decoder().feed(data)


def test_pending_for_stalled_client() -> None:
    d = Decoder()
    assert d.feed(b"request=smtpd_access_policy\nprotocol_") == []
    assert d.pending


@pytest.mark.parametrize(
    ("verdict", "state", "permit", "expected"),
    [
        (OK, "RCPT", False, "DUNNO"),
        (OK, "RCPT", True, "OK"),
        (Verdict("2.0.0", "x", headers=(("X-A", "yes"),)), "DATA", False, "PREPEND X-A: yes"),
        (Verdict("2.0.0", "x", headers=(("X-A", "yes"),)), "END-OF-MESSAGE", False, "DUNNO"),
        (tempfail("down"), "RCPT", True, "DEFER_IF_PERMIT 4.3.0 down"),
        (Verdict("5.1.1", "unknown", code=550), "RCPT", False, "550 5.1.1 unknown"),
        (Verdict("4.7.1", "slow"), "RCPT", False, "450 4.7.1 slow"),
    ],
)
def test_action(verdict: Verdict, state: str, permit: bool, expected: str) -> None:
    assert action(verdict, state=state, permit=permit) == expected


def test_encode_exim() -> None:
    exim = Request({"request": "exim_access_policy"})
    assert encode(OK, exim) == b"ok\n"
    assert encode(tempfail("down"), exim) == b"defer 451 4.3.0 down\n"
    assert encode(Verdict("5.7.1", "no", code=554), exim) == b"deny 554 5.7.1 no\n"
    assert encode(OK) == b"action=DUNNO\n\n"


def test_cache_ttl_and_size() -> None:
    now = [0.0]
    c = TTLCache(5, 2, clock=lambda: now[0])
    c.put("a", 1)
    c.put("b", None)
    assert c.get("a") == 1 and c.get("b") is None
    c.put("c", 3)  # evicts the least recently used ("a": "b" was read after it)
    assert c.get("a") is MISSING and len(c) == 2
    now[0] = 5.0
    assert c.get("b") is MISSING


def test_transactions_bounded() -> None:
    t = Transactions(max_entries=3)
    for i in range(10):
        t.get(str(i)).accept(f"r{i}@x.test", False)
    assert len(t) == 3
    assert t.peek("0").recipients == []
    assert t.peek("9").recipients == ["r9@x.test"]
    assert t.get("").instance == "" and len(t) == 3


def _server(url: str, tmp: Path) -> PolicyServer:
    settings = config.from_dict({"database": {"url": url}, "policy": {"request_timeout": 2.0}})
    metrics = PolicyMetrics.create(CollectorRegistry())
    engine = Engine(
        settings, SqlStore(Database(url)), TTLCache(5, 10), Transactions(), metrics=metrics
    )
    return PolicyServer(engine, ThreadPoolExecutor(2), metrics, request_timeout=2.0)


def test_store_down_answers_defer_if_permit(tmp_path: Path) -> None:
    server = _server(f"sqlite:///{tmp_path}/missing.db", tmp_path)
    (req,) = Decoder().feed(REQ)
    reply = asyncio.run(server.answer(req))
    assert reply.startswith(b"action=DEFER_IF_PERMIT 4.3.0 ")
    assert server.metrics.store_errors._value.get() == 1
    exim = Request({**req.attrs, "request": "exim_access_policy"})
    assert asyncio.run(server.answer(exim)).startswith(b"defer 451 4.3.0 ")


def test_bug_answers_4_3_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = _server(f"sqlite:///{tmp_path}/missing.db", tmp_path)

    def boom(*_: object) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(server.engine, "evaluate", boom)
    (req,) = Decoder().feed(REQ)
    assert asyncio.run(server.answer(req)).startswith(b"action=DEFER_IF_PERMIT 4.3.0 ")


def test_bug_after_deciding_still_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in accounting (metrics, log) or the clock must not lose the reply."""
    server = _server(f"sqlite:///{tmp_path}/missing.db", tmp_path)

    def boom(*_: object) -> None:
        raise ZeroDivisionError

    (req,) = Decoder().feed(REQ)
    monkeypatch.setattr(server, "_account", boom)
    assert asyncio.run(server.answer(req)).startswith(b"action=DEFER_IF_PERMIT 4.3.0 ")
    monkeypatch.setattr(server.engine, "clock", boom)
    assert asyncio.run(server.answer(req)).startswith(b"action=DEFER_IF_PERMIT 4.3.0 ")


def test_bug_between_requests_answers_every_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new instance drops the old transaction; a bug there must not close the connection."""
    server = _server(f"sqlite:///{tmp_path}/missing.db", tmp_path)

    def boom(*_: object) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(server.engine.transactions, "drop", boom)
    two = REQ.replace(b"\n\n", b"\ninstance=1\n\n") + REQ.replace(b"\n\n", b"\ninstance=2\n\n")

    replies = asyncio.run(exchange(server, two)).split(b"\n\n")
    assert [r[:28] for r in replies] == [b"action=DEFER_IF_PERMIT 4.3.0"] * 2 + [b""]
