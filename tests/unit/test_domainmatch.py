"""Wildcard domains (core.domainmatch): names, candidates and precedence, by table."""

from __future__ import annotations

import pytest

from mailwarden.core import domainmatch
from mailwarden.errors import UsageError

STORED = {"example.test", "*.example.test", "*.b.example.test", "exact.example.test"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.test", "example.test"),  # the exact domain: not its own wildcard
        ("a.example.test", "*.example.test"),
        ("x.a.example.test", "*.example.test"),  # any depth
        ("b.example.test", "*.example.test"),  # *.b.example.test does not cover b.example.test
        ("c.b.example.test", "*.b.example.test"),  # the longest suffix wins
        ("d.c.b.example.test", "*.b.example.test"),
        ("exact.example.test", "exact.example.test"),  # exact wins over any wildcard
        ("sub.exact.example.test", "*.example.test"),  # exact covers no subdomain
        ("other.test", None),
        ("test", None),
        ("evil-example.test", None),
        ("aexample.test", None),
    ],
)
def test_best(name: str, expected: str | None) -> None:
    assert domainmatch.best(name, STORED) == expected


def test_candidates_best_first() -> None:
    assert domainmatch.candidates("a.b.example.test") == [
        "a.b.example.test",
        "*.b.example.test",
        "*.example.test",
    ]
    assert domainmatch.candidates("example.test") == ["example.test"]


@pytest.mark.parametrize(
    ("pattern", "name", "covered"),
    [
        ("*.example.test", "a.example.test", True),
        ("*.example.test", "example.test", False),
        ("*.example.test", ".example.test", False),
        ("*.example.test", "aexample.test", False),
        ("example.test", "example.test", True),
        ("example.test", "a.example.test", False),
    ],
)
def test_covers(pattern: str, name: str, covered: bool) -> None:
    assert domainmatch.covers(pattern, name) is covered


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*.Example.TEST", "*.example.test"),
        (" *.example.test. ", "*.example.test"),
        ("*.bücher.example", "*.xn--bcher-kva.example"),
        ("Example.test", "example.test"),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert domainmatch.normalize(text) == expected


@pytest.mark.parametrize(
    "text",
    ["*.test", "*", "*.", "**.example.test", "*.*.example.test", "a*.example.test", "x.*.test"],
)
def test_normalize_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        domainmatch.normalize(text)
