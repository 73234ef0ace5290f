"""Table tests for store.scopes.parse_scope (the pure part of resolving a SCOPE)."""

from __future__ import annotations

import pytest

from mailwarden.errors import UsageError
from mailwarden.store.scopes import ParsedScope, parse_scope


@pytest.mark.parametrize(
    ("text", "clients", "expected"),
    [
        ("global", False, ParsedScope("global", "global")),
        (" GLOBAL ", False, ParsedScope("global", "global")),
        ("Example.TEST", False, ParsedScope("domain", "example.test")),
        ("example.test.", False, ParsedScope("domain", "example.test")),
        ("bücher.example", False, ParsedScope("domain", "xn--bcher-kva.example")),
        ("Bob@Example.Test", False, ParsedScope("mailbox", "bob@example.test")),
        ("192.0.2.7", True, ParsedScope("client", "client:192.0.2.7")),
        ("192.0.2.7/24", True, ParsedScope("client", "client:192.0.2.0/24")),
        ("client:10.0.0.0/8", True, ParsedScope("client", "client:10.0.0.0/8")),
        ("2001:DB8::/32", True, ParsedScope("client", "client:2001:db8::/32")),
        ("::ffff:192.0.2.7", True, ParsedScope("client", "client:192.0.2.7")),
        ("example.test", True, ParsedScope("domain", "example.test")),
    ],
)
def test_parse_scope(text: str, clients: bool, expected: ParsedScope) -> None:
    assert parse_scope(text, clients=clients) == expected


@pytest.mark.parametrize(
    ("text", "clients", "allow_global", "message"),
    [
        ("192.0.2.7", False, True, "only valid for rate limits"),
        ("client:192.0.2.7", False, True, "only valid for rate limits"),
        ("10.0.0.0/33", True, True, "invalid network"),
        ("10.*.*.*", True, True, "invalid scope"),
        ("global", True, False, "'global' is not valid here"),
        ("", False, True, "invalid scope"),
        ("localhost", False, True, "invalid scope"),
        ("bad domain", False, True, "invalid scope"),
        ("x'; DROP TABLE spam_settings; --", False, True, "invalid scope"),
        ("@example.test", False, True, "invalid address"),
        ("a@b@example.test", False, True, "invalid address"),
    ],
)
def test_parse_scope_refuses(text: str, clients: bool, allow_global: bool, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_scope(text, clients=clients, allow_global=allow_global)
