"""The mail fetcher's pure decisions (``mailwarden.fetch.plan``): table tests."""

from __future__ import annotations

import pytest

from mailwarden.fetch import plan
from mailwarden.fetch.plan import DELIVERED, REFUSED, TEMPORARY, Listed

A, B, C = Listed("u-a", "1", 100), Listed("u-b", "2", 200), Listed("u-c", "3", 300)


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        ({}, [A, B, C]),
        ({"u-a": ("d", DELIVERED)}, [B, C]),
        ({"u-b": ("d", REFUSED)}, [A, C]),  # refused: never retried
        ({"u-a": ("", DELIVERED), "u-b": ("", DELIVERED), "u-c": ("", DELIVERED)}, []),
        ({"gone": ("", DELIVERED)}, [A, B, C]),
    ],
)
def test_to_fetch(seen: dict[str, tuple[str, str]], expected: list[Listed]) -> None:
    assert plan.to_fetch([A, B, C], seen) == expected


@pytest.mark.parametrize(
    ("keep", "seen", "expected"),
    [
        (True, {"u-a": ("", DELIVERED)}, []),
        (False, {"u-a": ("", DELIVERED)}, [A]),
        (False, {"u-a": ("", REFUSED)}, []),  # a refused message stays on the server
        (False, {}, []),  # not delivered yet: never deleted
        (False, {"u-a": ("", DELIVERED), "u-c": ("", DELIVERED)}, [A, C]),
    ],
)
def test_to_delete(keep: bool, seen: dict[str, tuple[str, str]], expected: list[Listed]) -> None:
    assert plan.to_delete([A, B, C], seen, keep) == expected


def test_to_forget_only_what_the_server_no_longer_lists() -> None:
    seen = {"u-a": ("", DELIVERED), "old": ("", DELIVERED), "older": ("", REFUSED)}
    assert plan.to_forget([A, B], seen) == ["old", "older"]
    assert plan.to_forget([], {}) == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (250, DELIVERED),
        (251, DELIVERED),
        (421, TEMPORARY),
        (452, TEMPORARY),
        (450, TEMPORARY),
        (550, REFUSED),
        (552, REFUSED),
        (554, REFUSED),
        (0, TEMPORARY),
        (999, TEMPORARY),
        (354, TEMPORARY),
    ],
)
def test_outcome(code: int, expected: str) -> None:
    assert plan.outcome(code) == expected


def test_renumbered() -> None:
    listed = [Listed(plan.imap_key(7, 1), "1", 10)]
    assert not plan.renumbered(listed, {}, 7)  # nothing seen yet
    assert not plan.renumbered(listed, {"7:1": ("", DELIVERED)}, 7)
    assert plan.renumbered(listed, {"6:1": ("", DELIVERED)}, 7)
    assert not plan.renumbered([], {"6:1": ("", DELIVERED)}, 7)  # empty folder: nothing to do


def test_rematch_one_for_one() -> None:
    x1, x2, y = Listed("9:1", "1", 5), Listed("9:2", "2", 5), Listed("9:3", "3", 6)
    seen = {"8:10": ("dx", DELIVERED), "8:11": ("dy", REFUSED), "8:12": ("", DELIVERED)}
    # two identical copies now, one seen before: only one is skipped
    matched = plan.rematch([(x1, "dx"), (x2, "dx"), (y, "dy")], seen)
    assert matched == [(x1, "dx", DELIVERED), (y, "dy", REFUSED)]
    assert plan.rematch([(x1, "")], seen) == []  # no digest matches nothing


def test_digest_message_id_and_size() -> None:
    h1 = b"Subject: a\r\nMessage-ID: <1@x>\r\n\r\n"
    h2 = b"Subject: changed\r\nMessage-Id:\r\n  <1@x>\r\n\r\n"  # folded, other case
    assert plan.digest(h1, 10) == plan.digest(h2, 10)
    assert plan.digest(h1, 10) != plan.digest(h1, 11)
    no_id = b"Subject: a\r\nFrom: b@c\r\n\r\n"
    assert plan.digest(no_id, 10) == plan.digest(no_id.replace(b"\r\n", b"\n"), 10)
    assert plan.digest(no_id, 10) != plan.digest(b"Subject: b\r\nFrom: b@c\r\n\r\n", 10)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", b"A: 1\r\nB: 2\r\n\r\n"),
        (b"A: 1\nB: 2\n\nbody", b"A: 1\nB: 2\n\n"),
        (b"A: 1\r\n", b"A: 1\r\n"),
        (b"", b""),
    ],
)
def test_header_block(raw: bytes, expected: bytes) -> None:
    assert plan.header_block(raw) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Return-Path: <bounce@list.test>\r\nFrom: A <a@x.test>\r\n\r\n", "bounce@list.test"),
        (b"From: A <a@x.test>\r\n\r\n", "a@x.test"),
        (b"Return-Path: <>\r\nFrom: a@x.test\r\n\r\n", "a@x.test"),
        (b"Subject: none\r\n\r\n", ""),
        (b"From: not an address\r\n\r\n", ""),
        (b"From: <a@b@c>\r\n\r\n", ""),
    ],
)
def test_envelope_sender(header: bytes, expected: str) -> None:
    assert plan.envelope_sender(header) == expected


def test_trace_headers() -> None:
    text = plan.trace_headers(
        protocol="imap",
        tls="tls",
        host="imap.isp.test",
        port=993,
        username="joe",
        folder="INBOX",
        mailbox="joe@example.test",
        now=0,
    ).decode()
    assert text.startswith("Received: from imap.isp.test by mailwarden-fetch with IMAPS\r\n")
    assert "for <joe@example.test>; Thu, 01 Jan 1970 00:00:00 -0000\r\n" in text
    assert text.endswith("X-Mailwarden-Fetched-From: imap://joe@imap.isp.test:993/INBOX\r\n")
    pop = plan.trace_headers(
        protocol="pop3",
        tls="none",
        host="h",
        port=110,
        username="u\r\nX: y",
        folder="INBOX",
        mailbox="m@e.test",
        now=0,
    ).decode()
    assert "with POP3\r\n" in pop and "pop3://u??X: y@h:110\r\n" in pop  # no header injection
