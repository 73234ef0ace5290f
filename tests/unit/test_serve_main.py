"""``serve``: every daemon's addresses checked by the one parser before anything starts."""

from __future__ import annotations

import pytest

from mailwarden import config
from mailwarden.errors import ConfigError
from mailwarden.serve.main import tcp_listens


def _settings(**sections: dict[str, object]) -> config.Settings:
    return config.from_dict({"milter": {"clamd": "", "spamd": ""}, **sections}, source="/c")


@pytest.mark.parametrize(
    ("name", "section", "key", "specs", "expected"),
    [
        (
            "policyd",
            "policy",
            "listen",
            ["127.0.0.1:10040", "unix:/p.sock"],
            [("127.0.0.1", 10040)],
        ),
        ("policyd", "policy", "listen", ["[::1]:10040"], [("::1", 10040)]),
        ("milter", "milter", "listen", ["inet:8894@127.0.0.1"], [("127.0.0.1", 8894)]),
        ("milter", "milter", "listen", ["unix:/var/spool/postfix/private/m"], []),
        ("lmtpd", "lda", "lmtp_listen", ["inet:127.0.0.1:24", "unix:/l.sock"], [("127.0.0.1", 24)]),
    ],
)
def test_tcp_listens_of_each_daemon(
    name: str, section: str, key: str, specs: list[str], expected: list[tuple[str, int]]
) -> None:
    settings = _settings(**{section: {key: specs}})
    assert tcp_listens(settings, name) == expected


@pytest.mark.parametrize(
    ("name", "section", "key", "spec"),
    [
        ("lmtpd", "lda", "lmtp_listen", "/run/lmtp.sock"),
        ("policyd", "policy", "listen", "10040"),
        ("milter", "milter", "listen", "unix:relative"),
    ],
)
def test_a_bad_address_names_the_key(name: str, section: str, key: str, spec: str) -> None:
    with pytest.raises(ConfigError, match=f"^/c: {section}.{key}: listen address {spec!r}"):
        tcp_listens(_settings(**{section: {key: [spec]}}), name)
