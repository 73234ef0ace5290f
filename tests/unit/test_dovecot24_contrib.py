"""contrib/dovecot/dovecot-2.4/mailwarden.conf, structurally (the real Dovecot 2.4 run is
tests/integration/test_dovecot24.py).

These fast checks catch what a careless edit breaks without starting anything:
it renders for both dialects without a leftover placeholder,
its blocks balance, it starts with dovecot_config_version, it uses no setting or variable
that 2.4 removed, and it has every part of the 2.3 files it replaces.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailwarden.setup.render import placeholders, render

CONF = Path(__file__).resolve().parents[2] / "contrib/dovecot/dovecot-2.4/mailwarden.conf"

URLS = {
    "sqlite": "sqlite:////var/lib/mailwarden/mailwarden.db",
    "mysql-tcp": "mysql://mw_dovecot:Abc123@127.0.0.1:3306/mailwarden",
    "mysql-socket": "mysql://mw_dovecot:Abc123@localhost/mailwarden?unix_socket=/run/mysqld/mysqld.sock",
}

# Gone in 2.4 (2.3-to-2.4 upgrade notes): settings, and every one-letter %-variable.
REMOVED = ("mail_location", "quota_rule", "quota_grace", "default_pass_scheme", "mail_plugins =")
REMOVED_RE = (
    re.compile(r"^\s*args\s*="),
    re.compile(r"^\s*(password_query|user_query|connect)\s*="),
    re.compile(r"^\s*plugin\s*\{"),
    re.compile(r"^\s*quota\s*=\s*maildir"),
    re.compile(r"%[a-zA-Z]"),  # %u %n %d %s %w %Lu ...; 2.4 has only %{name}
)


def rendered(url: str) -> str:
    values = placeholders(
        url,
        mail_root="/var/mail/vhosts",
        uid=5000,
        gid=5000,
        dovecot_dir="/etc/dovecot",
        postfix_dir="/etc/postfix/mailwarden",
    )
    return render(CONF.read_text(), values)


def active_lines(text: str) -> list[str]:
    """Lines without comments (a # outside quotes starts one) and blank lines."""
    out = []
    for line in text.splitlines():
        in_quote = ""
        for i, ch in enumerate(line):
            if ch in "'\"" and (not in_quote or in_quote == ch):
                in_quote = "" if in_quote else ch
            elif ch == "#" and not in_quote:
                line = line[:i]
                break
        if line.strip():
            out.append(line.rstrip())
    return out


def blocks(lines: list[str]) -> list[str]:
    """Every opened block as 'outer/inner' paths; asserts the braces balance."""
    stack: list[str] = []
    seen = []
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.endswith("{"):
            stack.append(" ".join(stripped[:-1].split()))
            seen.append("/".join(stack))
        elif stripped == "}":
            assert stack, f"line {n}: '}}' without a block"
            stack.pop()
        else:
            assert "{" not in stripped.replace("%{", "") and "}" not in re.sub(
                r"%\{[^}]*\}", "", stripped
            ), f"line {n}: a brace inside a setting: {line}"
            assert re.match(r"^[a-z_][a-z0-9_]*\s*=", stripped), f"line {n}: not a setting: {line}"
    assert not stack, f"unclosed blocks: {stack}"
    return seen


@pytest.mark.parametrize("url", URLS.values(), ids=URLS.keys())
def test_renders_and_parses_structurally(url: str) -> None:
    lines = active_lines(rendered(url))
    assert lines[0] == "dovecot_config_version = 2.4.0"
    seen = blocks(lines)
    for line in lines:
        for name in REMOVED:
            assert name not in line, line
        for pattern in REMOVED_RE:
            assert not pattern.search(line), line
    text = "\n".join(lines)
    assert {
        "passdb sql",
        "userdb sql",
        'quota "User quota"',
        "quota_clone",
        "quota_clone/dict proxy",
        "dict_server/dict mailwarden/dict_map priv/quota/storage",
        "dict_server/dict mailwarden/dict_map priv/quota/messages",
    } <= set(seen)
    assert "driver = maildir" in text and "mail_driver = maildir" in text
    assert "AS quota_storage_size" in text and "'%{user}'" in text
    assert text.count("username_field = username") == 2
    # exactly one database connection, of the right dialect
    sqlite = url.startswith("sqlite")
    assert ("sqlite_path = /var/lib/mailwarden/mailwarden.db" in text) == sqlite
    assert sum(1 for s in seen if s.startswith("mysql ")) == (0 if sqlite else 1)
    assert text.count("query = SELECT") == 3  # passdb + userdb + iterate_query
    assert ("CONCAT(" in text) == (not sqlite)


def test_socket_and_tcp_variants() -> None:
    tcp = active_lines(rendered(URLS["mysql-tcp"]))
    sock = active_lines(rendered(URLS["mysql-socket"]))
    assert "mysql 127.0.0.1 {" in tcp and "  port = 3306" in tcp
    assert "mysql /run/mysqld/mysqld.sock {" in sock and not any("port" in x for x in sock)
