"""Glob forms of allow/block patterns (issue 9): ``spam block example.test '*@spammer.example'``
used to be stored and never match. Now ``*@domain`` means ``@domain``, ``*.domain`` /
``@*.domain`` mean every subdomain, ``a.b.c.*`` is a client network, and any other ``*``
is refused with one line that says what is accepted; rows stored before are matched the
same way or reported as matching nothing."""

from __future__ import annotations

import pytest

from mailwarden.core.spamsettings import (
    PATTERN_FORMS,
    layer_decision,
    parse_pattern,
    stored_pattern_note,
)
from mailwarden.errors import UsageError


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("*@Spammer.Example", "@spammer.example"),
        ("*.spammer.example", "@*.spammer.example"),
        ("@*.Spammer.Example", "@*.spammer.example"),
        ("*@*.spammer.example", "@*.spammer.example"),
        ("192.0.2.*", "192.0.2.0/24"),
        ("10.*.*.*", "10.0.0.0/8"),
    ],
)
def test_glob_forms_are_stored_normalised(text: str, stored: str) -> None:
    assert parse_pattern(text) == stored


@pytest.mark.parametrize(
    "text", ["user@*", "spam*@spammer.example", "*", "@*", "*@*", "a*.spammer.example"]
)
def test_other_globs_are_refused_saying_what_is_accepted(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_pattern(text)
    assert PATTERN_FORMS in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("sender", "entries", "expected"),
    [
        # the reported case: what the CLI stores for '*@spammer.example' now matches
        ("x@spammer.example", [("block", parse_pattern("*@spammer.example"))], "block"),
        # an old row stored verbatim before this change matches too
        ("x@spammer.example", [("block", "*@spammer.example")], "block"),
        ("x@mx.spammer.example", [("block", "*@spammer.example")], None),  # not subdomains
        # subdomains at any depth, not the domain itself
        ("x@mx.spammer.example", [("block", "@*.spammer.example")], "block"),
        ("x@a.b.spammer.example", [("block", "@*.spammer.example")], "block"),
        ("x@spammer.example", [("block", "@*.spammer.example")], None),
        ("x@notspammer.example", [("block", "@*.spammer.example")], None),
        # the more specific entry wins: @domain over @*.parent, nearest parent first
        (
            "x@mx.spammer.example",
            [("block", "@*.spammer.example"), ("allow", "@mx.spammer.example")],
            "allow",
        ),
        (
            "x@a.mx.spammer.example",
            [("block", "@*.spammer.example"), ("allow", "@*.mx.spammer.example")],
            "allow",
        ),
        ("x@a.mx.spammer.example", [("allow", "x@a.mx.spammer.example"),
                                    ("block", "@*.spammer.example")], "allow"),
    ],
)  # fmt: skip
def test_glob_patterns_match(sender: str, entries: list[tuple[str, str]], expected: str) -> None:
    assert layer_decision(sender, "", entries) == expected


def test_client_wildcard_matches_as_network() -> None:
    entries = [("block", parse_pattern("192.0.2.*"))]
    assert layer_decision("x@y.example", "192.0.2.77", entries) == "block"
    assert layer_decision("x@y.example", "192.0.3.1", entries) is None


def test_stored_rows_are_explained() -> None:
    assert stored_pattern_note("@spammer.example") is None
    assert stored_pattern_note("*@spammer.example") == "matches as @spammer.example"
    note = stored_pattern_note("spam*@spammer.example")
    assert note is not None and note.startswith("matches nothing")
    assert layer_decision("spam1@spammer.example", "", [("block", "spam*@spammer.example")]) is None
