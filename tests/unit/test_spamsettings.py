"""Table tests for core.spamsettings: layering of settings and of allow/block lists."""

from __future__ import annotations

import pytest

from mailwarden.core.spamsettings import (
    Effective,
    Layer,
    by_layer,
    effective,
    layer_decision,
    list_decision,
    parse_pattern,
)
from mailwarden.errors import UsageError

G = Layer("folder", 5.0)
G_ENF = Layer("folder", 5.0, enforce=True)


@pytest.mark.parametrize(
    ("global_", "domain", "mailbox", "expected"),
    [
        # global alone
        (G, None, None, Effective("folder", 5.0, "global")),
        (Layer(None, None), None, None, Effective("folder", 5.0, "global")),
        (Layer("tag", 0.0), None, None, Effective("tag", 0.0, "global")),
        # domain overrides what it sets; NULL inherits
        (G, Layer("reject", None), None, Effective("reject", 5.0, "domain")),
        (G, Layer(None, 8.5), None, Effective("folder", 8.5, "domain")),
        (G, Layer(None, None), None, Effective("folder", 5.0, "global")),
        # mailbox overrides domain and global
        (G, Layer("reject", 7.0), Layer("tag", None), Effective("tag", 7.0, "mailbox")),
        (G, None, Layer(None, 3.0), Effective("folder", 3.0, "mailbox")),
        (G, Layer("discard", None), Layer(None, 2.0), Effective("discard", 2.0, "mailbox")),
        # global enforced: domain and mailbox are ignored
        (G_ENF, Layer("tag", 9.0), None, Effective("folder", 5.0, "global", "global")),
        (G_ENF, None, Layer("tag", 9.0), Effective("folder", 5.0, "global", "global")),
        (
            G_ENF,
            Layer("tag", 9.0, True),
            Layer("discard", 1.0),
            Effective("folder", 5.0, "global", "global"),
        ),
        (G_ENF, None, None, Effective("folder", 5.0, "global")),
        # domain enforced: it applies, the mailbox is ignored
        (
            G,
            Layer("reject", None, True),
            Layer("tag", 1.0),
            Effective("reject", 5.0, "domain", "domain"),
        ),
        (
            G,
            Layer(None, None, True),
            Layer("tag", 1.0),
            Effective("folder", 5.0, "global", "domain"),
        ),
        (G, Layer("reject", 6.0, True), None, Effective("reject", 6.0, "domain")),
        # a mailbox enforce flag has nothing below it to stop
        (G, None, Layer("tag", 4.0, True), Effective("tag", 4.0, "mailbox")),
        # boundary: threshold 0 is a value, not "inherit"
        (G, Layer(None, 0.0), None, Effective("folder", 0.0, "domain")),
    ],
)
def test_effective(
    global_: Layer, domain: Layer | None, mailbox: Layer | None, expected: Effective
) -> None:
    assert effective(global_, domain, mailbox) == expected


def test_effective_threshold_is_float() -> None:
    assert isinstance(effective(Layer("tag", 5), None, None).threshold, float)


SENDER = "Spammer+Tag@Bad.Example"
CLIENT = "192.0.2.10"


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([], None),
        ([("allow", "friend@good.example")], None),
        ([("block", "@bad.example")], "block"),
        ([("allow", "@bad.example")], "allow"),
        ([("block", "spammer+tag@bad.example")], "block"),
        # the address without its +extension matches too
        ([("block", "spammer@bad.example")], "block"),
        # most specific sender entry wins
        ([("allow", "@bad.example"), ("block", "spammer@bad.example")], "block"),
        ([("block", "@bad.example"), ("allow", "spammer@bad.example")], "allow"),
        ([("block", "spammer@bad.example"), ("allow", "spammer+tag@bad.example")], "allow"),
        # client networks: longest prefix wins
        ([("block", "192.0.2.0/24")], "block"),
        ([("block", "192.0.2.0/24"), ("allow", "192.0.2.10")], "allow"),
        ([("allow", "192.0.0.0/16"), ("block", "192.0.2.0/24")], "block"),
        ([("block", "198.51.100.0/24")], None),
        # sender and client disagree: block wins
        ([("allow", "spammer@bad.example"), ("block", "192.0.2.10")], "block"),
        ([("block", "@bad.example"), ("allow", "192.0.2.0/24")], "block"),
        # subdomains are not covered by @domain
        ([("block", "@example")], None),
        # damaged rows decide nothing
        ([("block", "not a pattern"), ("block", "10.*.*.*")], None),
    ],
)
def test_layer_decision(entries: list[tuple[str, str]], expected: str | None) -> None:
    assert layer_decision(SENDER, CLIENT, entries) == expected


@pytest.mark.parametrize(
    ("sender", "client", "expected"),
    [
        ("", "192.0.2.10", "allow"),  # null sender: only the client entry counts
        ("<>", "unknown", None),
        ("<x@bad.example>", "unknown", "block"),
        ("no-at-sign", "unknown", None),
        ("x@bad.example", "::ffff:192.0.2.10", "block"),
    ],
)
def test_layer_decision_odd_inputs(sender: str, client: str, expected: str | None) -> None:
    entries = [("block", "@bad.example"), ("allow", "192.0.2.10")]
    assert layer_decision(sender, client, entries) == expected


def test_layer_decision_delimiter() -> None:
    entries = [("block", "user@bad.example")]
    assert layer_decision("user-x@bad.example", "", entries, delimiter="-") == "block"
    assert layer_decision("user-x@bad.example", "", entries, delimiter="+") is None
    assert layer_decision("user+x@bad.example", "", entries, delimiter="") is None


BLOCK_BAD = [("block", "@bad.example")]
ALLOW_BAD = [("allow", "@bad.example")]
NOFLAGS: dict[str, bool] = {}


@pytest.mark.parametrize(
    ("layers", "flags", "expected"),
    [
        ({}, NOFLAGS, None),
        ({"global": BLOCK_BAD}, NOFLAGS, "block"),
        # a lower layer overrides an unenforced upper one
        ({"global": BLOCK_BAD, "mailbox": ALLOW_BAD}, NOFLAGS, "allow"),
        ({"global": BLOCK_BAD, "domain": ALLOW_BAD}, NOFLAGS, "allow"),
        ({"domain": ALLOW_BAD, "mailbox": BLOCK_BAD}, NOFLAGS, "block"),
        ({"global": ALLOW_BAD, "domain": BLOCK_BAD, "mailbox": ALLOW_BAD}, NOFLAGS, "allow"),
        # an enforced layer's decision is final ...
        ({"global": BLOCK_BAD, "mailbox": ALLOW_BAD}, {"global": True}, "block"),
        ({"global": BLOCK_BAD, "domain": ALLOW_BAD}, {"global": True}, "block"),
        ({"domain": BLOCK_BAD, "mailbox": ALLOW_BAD}, {"domain": True}, "block"),
        ({"global": ALLOW_BAD, "mailbox": BLOCK_BAD}, {"global": True}, "allow"),
        # ... an enforced layer above an enforced lower one wins
        ({"global": BLOCK_BAD, "domain": ALLOW_BAD}, {"global": True, "domain": True}, "block"),
        # ... but where it has no matching entry, lower layers still decide
        ({"global": [], "mailbox": ALLOW_BAD}, {"global": True}, "allow"),
        (
            {"global": [("block", "@other.example")], "mailbox": BLOCK_BAD},
            {"global": True},
            "block",
        ),
        # enforce on a layer below does not protect against nothing
        ({"global": BLOCK_BAD, "mailbox": ALLOW_BAD}, {"mailbox": True}, "allow"),
        # unknown layers are ignored
        ({"elsewhere": BLOCK_BAD}, NOFLAGS, None),
    ],
)
def test_list_decision(
    layers: dict[str, list[tuple[str, str]]], flags: dict[str, bool], expected: str | None
) -> None:
    assert list_decision("x@bad.example", "203.0.113.5", layers, flags) == expected


def test_by_layer_groups_rows() -> None:
    rows = [("global", "block", "@a.example"), ("mailbox", "allow", "b@c.example")]
    grouped = by_layer(rows)
    assert grouped == {
        "global": [("block", "@a.example")],
        "domain": [],
        "mailbox": [("allow", "b@c.example")],
    }
    assert list_decision("x@a.example", "", grouped, {}) == "block"


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("Friend@Good.Example", "friend@good.example"),
        ("@Good.Example", "@good.example"),
        ("<friend@good.example>", "friend@good.example"),
        ("192.0.2.10", "192.0.2.10"),
        ("192.0.2.10/24", "192.0.2.0/24"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("::ffff:192.0.2.10", "192.0.2.10"),
    ],
)
def test_parse_pattern(text: str, stored: str) -> None:
    assert parse_pattern(text) == stored


@pytest.mark.parametrize(
    "text",
    [
        "",
        "good.example",
        "friend@",
        "@",
        "a@b@c.example",
        "*.*.*.*",
        "0.0.0.0/0",
        "::/0",
        "x'; DROP TABLE access_lists; --@evil.example",
        "1.2.3.4/40",
    ],
)
def test_parse_pattern_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_pattern(text)
