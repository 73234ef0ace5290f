"""Account commands end to end: domain, user, group, alias, forward — on SQLite and MariaDB.

Each test drives the real ``mailwarden`` CLI (in-process) against a fresh database of
each dialect and asserts what an operator would notice: the output, the one-line error,
and what Postfix and Dovecot would read from the views.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mailwarden.passwords import verify_password
from mailwarden.store.db import Database
from tests.conftest import Cli, write_config

pytestmark = pytest.mark.integration

D = "example.test"


# --- helpers ------------------------------------------------------------------------------


def query(cli: Cli, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Read straight from the database the CLI wrote (views included)."""
    db = Database(cli.url)
    try:
        with db.read() as tx:
            return tx.all(sql, params)
    finally:
        db.close()


def count(cli: Cli, table: str) -> int:
    return int(query(cli, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])


def virtual(cli: Cli, address: str) -> list[str]:
    """What Postfix's virtual_alias_maps returns for ``address``."""
    rows = query(cli, "SELECT destination FROM postfix_virtual_alias WHERE address = ?", (address,))
    return sorted(r["destination"] for r in rows)


def stored_hash(cli: Cli, address: str) -> str:
    rows = query(cli, "SELECT password FROM mailboxes WHERE address = ?", (address,))
    return str(rows[0]["password"])


def as_json(text: str) -> Any:
    return json.loads(text)


def setup_domain(cli: Cli, *extra: str) -> None:
    cli.ok("domain", "add", D, *extra)


def add_user(cli: Cli, address: str, *extra: str) -> str:
    return cli.ok("user", "add", address, "--password-stdin", *extra, stdin="secret\n")


# --- domains ------------------------------------------------------------------------------


def test_domain_lifecycle(cli: Cli) -> None:
    out = cli.ok(
        "domain",
        "add",
        "Example.TEST.",
        "--max-mailboxes",
        "10",
        "--max-aliases",
        "5",
        "--default-quota",
        "1G",
        "--max-message-size",
        "25M",
    )
    assert "added local domain example.test" in out
    assert "alias domain alias.test -> example.test" in cli.ok(
        "domain", "add", "alias.test", "--alias-of", D
    )
    cli.ok("domain", "add", "relay.test", "--relay", "--transport", "smtp:[mx.relay.test]:25")
    cli.ok("domain", "add", "backup.test", "--relay")

    rows = {r["name"]: r for r in as_json(cli.ok("domain", "list", "--json"))}
    assert set(rows) == {D, "alias.test", "relay.test", "backup.test"}
    assert rows[D]["kind"] == "local" and rows[D]["mailboxes"] == 0
    assert rows["alias.test"]["alias_of"] == D
    assert rows["relay.test"]["transport"] == "smtp:[mx.relay.test]:25"
    assert rows["backup.test"]["transport"] is None
    table = cli.ok("domain", "list")
    assert table.splitlines()[0].split() == [
        "NAME",
        "KIND",
        "TARGET",
        "MAILBOXES",
        "ALIASES",
        "ACTIVE",
    ]

    shown = as_json(cli.ok("domain", "show", D, "--json"))
    assert shown["default_quota_bytes"] == 1024**3
    assert shown["max_message_bytes"] == 25 * 1024**2
    assert shown["max_mailboxes"] == 10 and shown["alias_domains"] == ["alias.test"]
    human = cli.ok("domain", "show", D)
    assert "default_quota     1G" in human and "max_message_size  25M" in human

    cli.ok("domain", "set", D, "--max-mailboxes", "0", "--default-quota", "500M", "--active", "no")
    cli.ok("domain", "set", "relay.test", "--transport", "relay:[10.0.0.1]")
    shown = as_json(cli.ok("domain", "show", D, "--json"))
    assert shown["max_mailboxes"] == 0 and shown["default_quota_bytes"] == 500 * 1024**2
    assert shown["active"] is False
    assert query(cli, "SELECT domain FROM postfix_mailbox_domains") == []
    transports = query(cli, "SELECT transport FROM postfix_transport WHERE domain = 'relay.test'")
    assert transports == [{"transport": "relay:[10.0.0.1]"}]
    cli.ok("domain", "set", D, "--active", "yes")
    assert query(cli, "SELECT domain FROM postfix_mailbox_domains") == [{"domain": D}]
    assert query(cli, "SELECT domain FROM postfix_alias_domains") == [{"domain": "alias.test"}]
    relays = {r["domain"] for r in query(cli, "SELECT domain FROM postfix_relay_domains")}
    assert relays == {"relay.test", "backup.test"}


def test_domain_remove(cli: Cli) -> None:
    setup_domain(cli)
    cli.ok("domain", "add", "alias.test", "--alias-of", D)
    add_user(cli, f"bob@{D}")
    cli.ok("alias", "add", f"info@{D}", f"bob@{D}")
    err = cli.fails("domain", "remove", D)
    assert "still has 1 mailbox, 1 alias, alias domain alias.test" in err
    assert "--force" in err
    out = cli.ok("domain", "remove", D, "--force")
    assert "removed domain example.test" in out
    assert "Maildirs were not deleted" in out
    for table in ("domains", "mailboxes", "aliases"):
        assert count(cli, table) == 0
    cli.ok("domain", "add", "empty.test")
    assert "Maildirs" not in cli.ok("domain", "remove", "empty.test")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["domain", "add", "bad_domain.test"], "invalid domain 'bad_domain.test'"),
        (["domain", "add", "nodot"], "invalid domain 'nodot'"),
        (["domain", "add", "a.test", "--alias-of", "nope.test"], "unknown domain 'nope.test'"),
        (["domain", "add", "a.test", "--relay", "--alias-of", D], "exclude each other"),
        (["domain", "add", "a.test", "--transport", "smtp:"], "relay domains only"),
        (["domain", "add", "a.test", "--default-quota", "12X"], "invalid size '12X'"),
        (["domain", "add", "a.test", "--max-mailboxes", "-1"], "invalid --max-mailboxes '-1'"),
        (["domain", "add", "a.test", "--max-aliases", "many"], "invalid --max-aliases 'many'"),
        (["domain", "add", "a.test", "--max-aliases", "99999999999"], "invalid --max-aliases"),
        (
            ["domain", "add", "a.test", "--relay", "--transport", "bad transport"],
            "invalid transport",
        ),
        (
            ["domain", "add", "a.test", "--relay", "--max-mailboxes", "3"],
            "--max-mailboxes applies to local",
        ),
        (["domain", "add", "EXAMPLE.test"], "domain example.test already exists"),
        (["domain", "show", "nope.test"], "unknown domain 'nope.test'"),
        (["domain", "set", D], "nothing to change"),
        (["domain", "set", D, "--active", "maybe"], "invalid --active 'maybe'"),
        (["domain", "set", D, "--transport", "smtp:[x.test]"], "relay domains only"),
        (["domain", "remove", "nope.test"], "unknown domain 'nope.test'"),
    ],
)
def test_domain_refuses(cli: Cli, args: list[str], message: str) -> None:
    setup_domain(cli)
    assert message in cli.fails(*args)
    assert count(cli, "domains") == 1


def test_alias_domain_must_point_at_local_domain(cli: Cli) -> None:
    setup_domain(cli)
    cli.ok("domain", "add", "alias.test", "--alias-of", D)
    cli.ok("domain", "add", "relay.test", "--relay")
    assert "alias domain must point at a local domain" in cli.fails(
        "domain", "add", "second.test", "--alias-of", "alias.test"
    )
    assert "alias domain must point at a local domain" in cli.fails(
        "domain", "add", "second.test", "--alias-of", "relay.test"
    )
    assert "applies to local domains only" in cli.fails(
        "domain", "set", "alias.test", "--max-aliases", "3"
    )


# --- users --------------------------------------------------------------------------------


def test_user_lifecycle(cli: Cli) -> None:
    setup_domain(cli, "--default-quota", "2G")
    out = add_user(cli, "Alice@Example.TEST", "--name", "Alice Liddell")
    assert "added mailbox alice@example.test" in out and "password:" not in out
    assert verify_password("secret", stored_hash(cli, f"alice@{D}"))
    assert stored_hash(cli, f"alice@{D}").startswith("{CRYPT}$6$")

    out = cli.ok("user", "add", f"bob@{D}", "--quota", "100M", "--quota-messages", "5000")
    generated = [ln for ln in out.splitlines() if ln.startswith("password: ")]
    assert len(generated) == 1
    password = generated[0].removeprefix("password: ")
    assert len(password) >= 16 and verify_password(password, stored_hash(cli, f"bob@{D}"))

    rows = {r["address"]: r for r in as_json(cli.ok("user", "list", "--json"))}
    assert set(rows) == {f"alice@{D}", f"bob@{D}"}
    assert rows[f"alice@{D}"]["quota_bytes"] == 2 * 1024**3  # the domain's default
    assert rows[f"bob@{D}"]["quota_bytes"] == 100 * 1024**2
    assert rows[f"bob@{D}"]["services"] == ["mail", "calendar", "contacts"]
    assert "password" not in json.dumps(rows).lower()
    assert as_json(cli.ok("user", "list", "--domain", D, "--json")) == list(rows.values())

    shown = as_json(cli.ok("user", "show", f"alice@{D}", "--json"))
    assert shown["name"] == "Alice Liddell" and shown["group"] == "default"
    assert shown["maildir"].endswith("/example.test/alice")
    assert shown["maildir"].startswith(str(Path(cli.config_path).parent))
    human = cli.ok("user", "show", f"alice@{D}")
    assert "$6$" not in human and "CRYPT" not in human
    assert "quota           2G" in human

    cli.ok("user", "set", f"alice@{D}", "--quota", "0", "--name", "A. L.", "--services", "mail")
    shown = as_json(cli.ok("user", "show", f"alice@{D}", "--json"))
    assert shown["quota_bytes"] == 0 and shown["name"] == "A. L."
    assert shown["services"] == ["mail"]
    assert "quota           unlimited" in cli.ok("user", "show", f"alice@{D}")

    old = stored_hash(cli, f"alice@{D}")
    cli.ok("user", "passwd", f"alice@{D}", "--password-stdin", stdin="n3w pass\n")
    assert verify_password("n3w pass", stored_hash(cli, f"alice@{D}"))
    assert not verify_password("secret", stored_hash(cli, f"alice@{D}")) and old != stored_hash(
        cli, f"alice@{D}"
    )
    cli.ok("user", "passwd", f"alice@{D}", "--password-stdin", "--scheme", "argon2id", stdin="x\n")
    assert stored_hash(cli, f"alice@{D}").startswith("{ARGON2ID}$argon2id$")
    assert verify_password("x", stored_hash(cli, f"alice@{D}"))
    out = cli.ok("user", "passwd", f"bob@{D}")
    new = out.split("password: ")[1].strip()
    assert verify_password(new, stored_hash(cli, f"bob@{D}"))

    cli.ok("alias", "add", f"info@{D}", f"bob@{D}")
    result = cli("user", "remove", f"bob@{D}")
    assert result.rc == 0
    assert "removed mailbox bob@example.test" in result.out and "left on disk" in result.out
    assert "warning" in result.err and f"info@{D}" in result.err
    assert [r["address"] for r in as_json(cli.ok("user", "list", "--json"))] == [f"alice@{D}"]


def test_user_quota_usage_and_inactive(cli: Cli) -> None:
    setup_domain(cli)
    add_user(cli, f"bob@{D}", "--inactive")
    assert as_json(cli.ok("user", "show", f"bob@{D}", "--json"))["active"] is False
    assert query(cli, "SELECT address FROM postfix_mailboxes") == []
    assert query(cli, "SELECT user FROM dovecot_users") == []
    assert virtual(cli, f"bob@{D}") == []
    cli.ok("user", "set", f"bob@{D}", "--active", "yes")
    assert query(cli, "SELECT address FROM postfix_mailboxes") == [{"address": f"bob@{D}"}]
    box = query(cli, "SELECT id FROM mailboxes WHERE address = ?", (f"bob@{D}",))[0]["id"]
    db = Database(cli.url)
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO quota_usage (mailbox_id, bytes, messages, updated_at) VALUES (?, ?, ?, ?)",
            (box, 3 * 1024**2, 12, 1700000000),
        )
    db.close()
    shown = as_json(cli.ok("user", "show", f"bob@{D}", "--json"))
    assert (shown["used_bytes"], shown["used_messages"]) == (3 * 1024**2, 12)
    assert "used            3M" in cli.ok("user", "show", f"bob@{D}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["user", "add", "not-an-address"], "invalid address 'not-an-address'"),
        (["user", "add", "a b@example.test"], "invalid address"),
        (["user", "add", "bob+tag@example.test"], "reserved as the recipient delimiter"),
        (["user", "add", "bob@nope.test"], "unknown domain 'nope.test'"),
        (
            ["user", "add", "x@alias.test"],
            "alias.test is an alias domain of example.test; add the user to example.test",
        ),
        (["user", "add", "x@relay.test"], "relay.test is a relay domain"),
        (["user", "add", "bob@example.test"], "mailbox bob@example.test already exists"),
        (["user", "add", "BOB@Example.Test"], "mailbox bob@example.test already exists"),
        (
            ["user", "add", "info@example.test"],
            "info@example.test is an alias; remove it first or use forward",
        ),
        (["user", "add", "new@example.test", "--quota", "lots"], "invalid size 'lots'"),
        (
            ["user", "add", "new@example.test", "--quota-messages", "1.5"],
            "invalid --quota-messages",
        ),
        (["user", "add", "new@example.test", "--group", "nope"], "unknown group 'nope'"),
        (["user", "add", "new@example.test", "--services", "mail,fax"], "unknown service 'fax'"),
        (["user", "add", "new@example.test", "--scheme", "md5"], "unknown password scheme 'md5'"),
        (["user", "add", "new@example.test", "--name", "two\nlines"], "invalid --name"),
        (["user", "show", "nobody@example.test"], "unknown mailbox 'nobody@example.test'"),
        (["user", "set", "bob@example.test"], "nothing to change"),
        (["user", "set", "bob@example.test", "--active", "perhaps"], "invalid --active"),
        (["user", "passwd", "nobody@example.test"], "unknown mailbox 'nobody@example.test'"),
        (["user", "remove", "nobody@example.test"], "unknown mailbox 'nobody@example.test'"),
        (["user", "list", "--domain", "nope.test"], "unknown domain 'nope.test'"),
    ],
)
def test_user_refuses(cli: Cli, args: list[str], message: str) -> None:
    setup_domain(cli)
    cli.ok("domain", "add", "alias.test", "--alias-of", D)
    cli.ok("domain", "add", "relay.test", "--relay")
    add_user(cli, f"bob@{D}")
    cli.ok("alias", "add", f"info@{D}", f"bob@{D}")
    before = stored_hash(cli, f"bob@{D}")
    assert message in cli.fails(*args, stdin="secret\n")
    assert count(cli, "mailboxes") == 1
    assert stored_hash(cli, f"bob@{D}") == before


def test_user_password_stdin_empty(cli: Cli) -> None:
    setup_domain(cli)
    assert "empty password on stdin" in cli.fails(
        "user", "add", f"bob@{D}", "--password-stdin", stdin=""
    )
    assert "empty password on stdin" in cli.fails(
        "user", "add", f"bob@{D}", "--password-stdin", stdin="\n"
    )
    assert count(cli, "mailboxes") == 0
    add_user(cli, f"bob@{D}")
    assert "empty password on stdin" in cli.fails(
        "user", "passwd", f"bob@{D}", "--password-stdin", stdin="\n"
    )
    assert verify_password("secret", stored_hash(cli, f"bob@{D}"))


def test_user_domain_mailbox_limit(cli: Cli) -> None:
    setup_domain(cli, "--max-mailboxes", "2")
    add_user(cli, f"a@{D}")
    add_user(cli, f"b@{D}")
    assert "domain example.test has reached its limit of 2 mailboxes" in cli.fails(
        "user", "add", f"c@{D}", "--password-stdin", stdin="secret\n"
    )
    assert count(cli, "mailboxes") == 2
    cli.ok("domain", "set", D, "--max-mailboxes", "0")  # 0 = unlimited
    add_user(cli, f"c@{D}")


def test_hashed_layout_and_scheme_from_config(cli: Cli, workdir: Path) -> None:
    root = workdir / "vmail-hashed"
    root.mkdir(exist_ok=True)
    cfg = write_config(
        workdir / f"{cli.config_path.stem}-hashed.toml",
        cli.url,
        root,
        '\nlayout = "hashed"\npassword_scheme = "argon2id"\n',
    )
    hashed = Cli(cfg, cli.url)
    hashed.ok("domain", "add", D)
    add = hashed.ok("user", "add", f"bob@{D}", "--password-stdin", stdin="secret\n")
    assert f"{root}/e/x/example.test/bob/" in add
    row = query(cli, "SELECT maildir, password FROM mailboxes")[0]
    assert row["maildir"] == "e/x/example.test/bob/"
    assert row["password"].startswith("{ARGON2ID}")


# --- groups -------------------------------------------------------------------------------


def test_groups(cli: Cli) -> None:
    setup_domain(cli)
    assert "added group imaponly (no pop3, smtp, sieve)" in cli.ok(
        "group", "add", "imaponly", "--no-pop3", "--no-smtp", "--no-sieve"
    )
    rows = {r["name"]: r for r in as_json(cli.ok("group", "list", "--json"))}
    assert set(rows) == {"default", "imaponly"}
    assert rows["imaponly"]["imap"] is True and rows["imaponly"]["pop3"] is False
    add_user(cli, f"bob@{D}", "--group", "imaponly")
    add_user(cli, f"eve@{D}")
    users = {r["user"]: r for r in query(cli, "SELECT * FROM dovecot_users")}
    assert int(users[f"bob@{D}"]["allow_pop3"]) == 0 and int(users[f"bob@{D}"]["allow_imap"]) == 1
    assert int(users[f"eve@{D}"]["allow_pop3"]) == 1
    courier = {r["username"]: r["options"] for r in query(cli, "SELECT * FROM courier_users")}
    assert courier[f"bob@{D}"] == "disableimap=0,disablepop3=1"
    assert as_json(cli.ok("group", "list", "--json"))[1]["mailboxes"] == 1

    assert "group imaponly is used by 1 mailbox" in cli.fails("group", "remove", "imaponly")
    assert "the default group cannot be removed" in cli.fails("group", "remove", "default")
    assert "group imaponly already exists" in cli.fails("group", "add", "ImapOnly")
    assert "unknown group 'nope'" in cli.fails("group", "remove", "nope")
    assert "invalid group name" in cli.fails("group", "add", "x'; DROP TABLE mail_groups; --")
    cli.ok("user", "set", f"bob@{D}", "--group", "default")
    cli.ok("group", "remove", "imaponly")
    assert [r["name"] for r in as_json(cli.ok("group", "list", "--json"))] == ["default"]


# --- aliases ------------------------------------------------------------------------------


def test_aliases(cli: Cli) -> None:
    setup_domain(cli)
    cli.ok("domain", "add", "other.test")
    add_user(cli, f"bob@{D}")
    add_user(cli, f"alice@{D}")
    out = cli.ok("alias", "add", f"Info@{D}", f"bob@{D}", f"ALICE@{D}", "someone@external.example")
    assert "added alias info@example.test -> bob@example.test, alice@example.test" in out
    cli.ok("alias", "add", f"@{D}", f"bob@{D}")
    cli.ok("alias", "add", f"@{D}", f"alice@{D}")  # adds a second destination
    cli.ok("alias", "add", f"spam@{D}", "DISCARD")
    cli.ok("alias", "add", "sales@other.test", f"info@{D}")

    rows = {r["source"]: r for r in as_json(cli.ok("alias", "list", "--json"))}
    assert set(rows) == {f"info@{D}", f"@{D}", f"spam@{D}", "sales@other.test"}
    assert rows[f"info@{D}"]["destinations"] == [
        f"bob@{D}",
        f"alice@{D}",
        "someone@external.example",
    ]
    assert rows[f"@{D}"]["destinations"] == [f"bob@{D}", f"alice@{D}"]
    assert rows[f"spam@{D}"]["destinations"] == ["discard"]
    only = as_json(cli.ok("alias", "list", "--domain", "other.test", "--json"))
    assert [r["source"] for r in only] == ["sales@other.test"]
    assert "bob@example.test,alice@example.test" in cli.ok("alias", "list")
    assert as_json(cli.ok("domain", "show", D, "--json"))["aliases"] == 3

    assert virtual(cli, f"spam@{D}") == ["discard@discard.mailwarden.invalid"]
    assert virtual(cli, f"info@{D}") == sorted(
        [f"alice@{D}", f"bob@{D}", "someone@external.example"]
    )
    transports = query(cli, "SELECT domain, transport FROM postfix_transport")
    assert {"domain": "discard.mailwarden.invalid", "transport": "discard:"} in transports

    cli.ok("alias", "remove", f"info@{D}", "someone@external.example")
    assert virtual(cli, f"info@{D}") == [f"alice@{D}", f"bob@{D}"]
    assert "removed alias @example.test" in cli.ok("alias", "remove", f"@{D}")
    assert virtual(cli, f"@{D}") == []
    assert "unknown alias '@example.test'" in cli.fails("alias", "remove", f"@{D}")
    assert "alias info@example.test -> nobody@x.example does not exist" in cli.fails(
        "alias", "remove", f"info@{D}", "nobody@x.example"
    )
    assert "alias info@example.test -> bob@example.test already exists" in cli.fails(
        "alias", "add", f"info@{D}", f"bob@{D}"
    )


def test_alias_to_alias_domain_and_extension(cli: Cli) -> None:
    setup_domain(cli)
    cli.ok("domain", "add", "alias.test", "--alias-of", D)
    add_user(cli, f"bob@{D}")
    cli.ok("alias", "add", f"a@{D}", "bob@alias.test", f"bob+lists@{D}")
    assert "destination nobody@alias.test does not exist" in cli.fails(
        "alias", "add", f"b@{D}", "nobody@alias.test"
    )
    mapped = query(
        cli,
        "SELECT destination FROM postfix_alias_domain_map"
        " WHERE alias_domain = ? AND local_part = ?",
        ("alias.test", "bob"),
    )
    assert mapped == [{"destination": f"bob@{D}"}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alias", "add", "bad address@example.test", "bob@example.test"], "invalid address"),
        (["alias", "add", "x@example.test", "not-an-address"], "invalid address 'not-an-address'"),
        (["alias", "add", "x@nope.test", "bob@example.test"], "unknown domain 'nope.test'"),
        (["alias", "add", "@nope.test", "bob@example.test"], "unknown domain 'nope.test'"),
        (
            ["alias", "add", "x@alias.test", "bob@example.test"],
            "alias.test is an alias domain of example.test; add the alias to example.test",
        ),
        (
            ["alias", "add", "@alias.test", "bob@example.test"],
            "alias.test is an alias domain of example.test",
        ),
        (["alias", "add", "@relay.test", "bob@example.test"], "relay.test is a relay domain"),
        (["alias", "add", "x@relay.test", "bob@example.test"], "relay.test is a relay domain"),
        (
            ["alias", "add", "bob@example.test", "x@external.example"],
            "bob@example.test is a mailbox; use 'forward set'",
        ),
        (
            ["alias", "add", "x@example.test", "nobody@example.test"],
            "destination nobody@example.test does not exist",
        ),
        (
            ["alias", "add", "x@example.test", "discard", "bob@example.test"],
            "discard cannot be combined",
        ),
        (
            ["alias", "add", "x@example.test", "x@example.test"],
            "mail loop: x@example.test -> x@example.test",
        ),
        (
            ["alias", "add", "a@example.test", "b@example.test"],
            "mail loop: a@example.test -> b@example.test -> a@example.test",
        ),
        (["alias", "add", "a@example.test", "a+x@example.test"], "mail loop"),
        (
            ["alias", "add", "a@example.test", "b@alias.test"],
            "mail loop: a@example.test -> b@alias.test -> b@example.test -> a@example.test",
        ),
        (
            ["alias", "add", "c@example.test", "bob@example.test", "nobody@example.test"],
            "destination nobody@example.test does not exist",
        ),
        (["alias", "remove", "nope@example.test"], "unknown alias 'nope@example.test'"),
    ],
)
def test_alias_refuses(cli: Cli, args: list[str], message: str) -> None:
    setup_domain(cli)
    cli.ok("domain", "add", "alias.test", "--alias-of", D)
    cli.ok("domain", "add", "relay.test", "--relay")
    add_user(cli, f"bob@{D}")
    cli.ok("alias", "add", f"a@{D}", f"bob@{D}")
    cli.ok("alias", "add", f"b@{D}", f"a@{D}")
    before = query(cli, "SELECT source, destination FROM aliases ORDER BY id")
    assert message in cli.fails(*args)
    assert query(cli, "SELECT source, destination FROM aliases ORDER BY id") == before


def test_loops_through_forwards_and_catchall(cli: Cli) -> None:
    setup_domain(cli)
    cli.ok("domain", "add", "other.test")
    add_user(cli, "carol@other.test")
    cli.ok("alias", "add", f"list@{D}", "carol@other.test")
    cli.ok("alias", "add", f"team@{D}", f"list@{D}")
    cli.ok("forward", "set", "carol@other.test", "x@external.example")
    # carol forwarding to an alias that reaches carol again
    err = cli.fails("forward", "set", "carol@other.test", f"team@{D}")
    assert err.endswith(f"mail loop: carol@other.test -> team@{D} -> list@{D} -> carol@other.test")
    assert virtual(cli, "carol@other.test") == ["x@external.example"]
    # once carol is gone, list@ ends in the catch-all of other.test: it must not feed list@
    result = cli("user", "remove", "carol@other.test")
    assert result.rc == 0 and f"list@{D}" in result.err
    err = cli.fails("alias", "add", "@other.test", f"team@{D}")
    assert err.endswith(
        f"mail loop: @other.test -> team@{D} -> list@{D} -> carol@other.test -> @other.test"
    )
    assert virtual(cli, "@other.test") == []


def test_alias_limit_counts_distinct_sources(cli: Cli) -> None:
    setup_domain(cli, "--max-aliases", "2")
    add_user(cli, f"bob@{D}")
    add_user(cli, f"eve@{D}")
    cli.ok("alias", "add", f"a@{D}", f"bob@{D}")
    cli.ok("alias", "add", f"a@{D}", f"eve@{D}")  # same source: not a new alias
    cli.ok("alias", "add", f"@{D}", f"bob@{D}")
    assert "domain example.test has reached its limit of 2 aliases" in cli.fails(
        "alias", "add", f"c@{D}", f"bob@{D}"
    )
    assert count(cli, "aliases") == 3


def test_failed_alias_add_changes_nothing(cli: Cli) -> None:
    setup_domain(cli)
    add_user(cli, f"bob@{D}")
    err = cli.fails("alias", "add", f"team@{D}", f"bob@{D}", f"typo@{D}")
    assert err == "mailwarden: destination typo@example.test does not exist"
    assert count(cli, "aliases") == 0
    assert as_json(cli.ok("alias", "list", "--json")) == []


# --- forwards -----------------------------------------------------------------------------


def test_forwards(cli: Cli) -> None:
    setup_domain(cli)
    add_user(cli, f"bob@{D}")
    add_user(cli, f"eve@{D}")
    assert virtual(cli, f"bob@{D}") == [f"bob@{D}"]

    out = cli.ok("forward", "set", f"bob@{D}", "bob@home.example", f"eve@{D}", "--keep-copy")
    assert "keeping a copy" in out
    assert as_json(cli.ok("forward", "show", f"bob@{D}", "--json")) == {
        "address": f"bob@{D}",
        "forwards": ["bob@home.example", f"eve@{D}"],
        "keep_copy": True,
    }
    assert virtual(cli, f"bob@{D}") == sorted([f"bob@{D}", "bob@home.example", f"eve@{D}"])
    assert as_json(cli.ok("user", "show", f"bob@{D}", "--json"))["forwards"] == [
        "bob@home.example",
        f"eve@{D}",
    ]

    cli.ok("forward", "set", f"bob@{D}", "bob@work.example")  # replaces, no copy
    assert virtual(cli, f"bob@{D}") == ["bob@work.example"]
    assert query(cli, "SELECT address FROM postfix_mailboxes WHERE address = ?", (f"bob@{D}",))

    assert "bob@example.test cannot forward to itself; use --keep-copy" in cli.fails(
        "forward", "set", f"bob@{D}", f"bob@{D}"
    )
    cli.ok("forward", "set", f"eve@{D}", f"bob@{D}")
    err = cli.fails("forward", "set", f"bob@{D}", f"eve@{D}", "--keep-copy")
    assert "mail loop: bob@example.test -> eve@example.test -> bob@example.test" in err
    assert "destination ghost@example.test does not exist" in cli.fails(
        "forward", "set", f"bob@{D}", f"ghost@{D}"
    )
    assert "unknown mailbox 'nobody@example.test'" in cli.fails(
        "forward", "set", f"nobody@{D}", "x@external.example"
    )
    assert "invalid address" in cli.fails("forward", "set", f"bob@{D}", "nope")
    # refused commands left the previous forwards in place
    assert virtual(cli, f"bob@{D}") == ["bob@work.example"]

    assert "removed 1 forward of" in cli.ok("forward", "clear", f"bob@{D}")
    assert virtual(cli, f"bob@{D}") == [f"bob@{D}"]
    shown = as_json(cli.ok("forward", "show", f"bob@{D}", "--json"))
    assert shown["forwards"] == [] and shown["keep_copy"] is False


# --- the data model as Postfix and Dovecot see it ----------------------------------------


def test_views_catchall_never_shadows_a_mailbox(cli: Cli) -> None:
    setup_domain(cli)
    add_user(cli, f"bob@{D}", "--quota", "1G", "--quota-messages", "100")
    add_user(cli, f"off@{D}", "--inactive")
    cli.ok("alias", "add", f"@{D}", "catch@external.example")
    cli.ok("alias", "add", f"sales@{D}", f"bob@{D}")

    # Postfix looks up user@domain before @domain: a mailbox row maps to itself.
    assert virtual(cli, f"bob@{D}") == [f"bob@{D}"]
    assert virtual(cli, f"sales@{D}") == [f"bob@{D}"]
    assert virtual(cli, f"@{D}") == ["catch@external.example"]
    # An inactive mailbox is absent everywhere (so it neither logs in nor receives).
    assert virtual(cli, f"off@{D}") == []
    assert [r["address"] for r in query(cli, "SELECT address FROM postfix_mailboxes")] == [
        f"bob@{D}"
    ]
    boxes = query(cli, "SELECT maildir FROM postfix_mailboxes WHERE address = ?", (f"bob@{D}",))
    assert boxes == [{"maildir": "example.test/bob/"}]
    users = query(cli, "SELECT * FROM dovecot_users")
    assert [u["user"] for u in users] == [f"bob@{D}"]
    assert users[0]["home"] == "example.test/bob/"
    assert users[0]["quota_rule"] == f"*:bytes={1024**3}:messages=100"
    assert verify_password("secret", users[0]["password"])

    # Without the mail service a mailbox cannot log in to Dovecot.
    cli.ok("user", "set", f"bob@{D}", "--services", "calendar,contacts")
    assert query(cli, "SELECT user FROM dovecot_users") == []


def test_sql_injection_is_stored_verbatim(cli: Cli) -> None:
    setup_domain(cli)
    evil = "x'); DROP TABLE mailboxes; --"
    add_user(cli, f"bob@{D}", "--name", evil)
    add_user(cli, f"o'brien@{D}", "--name", 'Robert "Bobby" Tables; DELETE FROM domains')
    assert as_json(cli.ok("user", "show", f"bob@{D}", "--json"))["name"] == evil
    cli.ok("user", "set", f"bob@{D}", "--name", evil + evil)
    assert as_json(cli.ok("user", "show", f"bob@{D}", "--json"))["name"] == evil + evil
    cli.ok("alias", "add", f"x'or'1'='1@{D}", f"o'brien@{D}")
    assert virtual(cli, f"x'or'1'='1@{D}") == [f"o'brien@{D}"]
    assert "invalid address" in cli.fails("user", "add", f"a');DROP TABLE domains;--@{D}")
    assert "invalid domain" in cli.fails("domain", "add", "x'; DROP TABLE domains; --")
    assert "unknown mailbox" in cli.fails("user", "show", f"' OR '1'='1@{D}".replace(" ", ""))
    assert count(cli, "mailboxes") == 2 and count(cli, "domains") == 1
    assert count(cli, "aliases") == 1


def test_database_unreachable(tmp_path: Path) -> None:
    from tests.servers import free_port

    url = f"mysql://mwuser:hunter2-secret@127.0.0.1:{free_port()}/mail"
    (tmp_path / "vmail").mkdir()
    down = Cli(write_config(tmp_path / "down.toml", url, tmp_path / "vmail"), url)
    for args in (["domain", "list"], ["user", "add", f"bob@{D}"], ["alias", "list", "--json"]):
        err = down.fails(*args)
        assert "mysql://mwuser:***@127.0.0.1:" in err
        assert "hunter2" not in err
