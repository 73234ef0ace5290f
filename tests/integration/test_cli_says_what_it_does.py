"""The admin CLI does what it says (issue 9, "What to build" 7), on SQLite and MariaDB.

Each test is a rough edge found by trying the CLI: a spam glob that was stored and never
matched, a mailbox without the mail service that still took mail, a ``spam set`` under
an enforced layer that printed success and changed nothing, a mailbox limit below the
current count, epoch integers in some JSON and ISO strings in other, add/set/remove
without ``--json``, and "a alias"."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from mailwarden.admin import cli as cli_module
from tests.conftest import Cli

D = "example.test"
ALICE = f"alice@{D}"
BOB = f"bob@{D}"
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# JSON keys that hold a point in time
TIME_KEYS = ("created_at", "created", "updated", "last_login", "expires", "from", "until")


def js(text: str) -> Any:
    return json.loads(text)


@pytest.fixture
def accounts(cli: Cli) -> Cli:
    cli.ok("domain", "add", D)
    cli.ok("user", "add", ALICE, "--password-stdin", stdin="pw\n")
    cli.ok("user", "add", BOB, "--password-stdin", stdin="pw\n")
    return cli


# --- spam globs -------------------------------------------------------------------------


def test_spam_block_glob_is_stored_in_the_form_that_matches(accounts: Cli) -> None:
    cli = accounts
    out = cli.ok("spam", "block", D, "*@spammer.example")
    assert "@spammer.example added to the block list" in out
    rows = js(cli.ok("spam", "lists", D, "--json"))
    assert [r["pattern"] for r in rows] == ["@spammer.example"]
    assert rows[0]["note"] is None
    cli.ok("spam", "block", D, "*.spammer.example")
    assert "@*.spammer.example" in cli.ok("spam", "lists", D)
    for bad in ("user@*", "spam*@spammer.example", "*"):
        err = cli.fails("spam", "block", D, bad)
        assert "@domain (or *@domain)" in err, err


def test_old_glob_rows_are_explained_and_can_be_unlisted(accounts: Cli) -> None:
    cli = accounts
    from mailwarden.store.db import Database

    db = Database(cli.url)
    with db.transaction() as tx:  # rows a version before this one stored verbatim
        for pattern in ("*@old.example", "spam*@old.example"):
            tx.execute(
                "INSERT INTO access_lists (scope, domain_id, mailbox_id, kind, pattern,"
                " created_at) VALUES ('global', NULL, NULL, 'block', ?, 1700000000)",
                (pattern,),
            )
    db.close()
    notes = {r["pattern"]: r["note"] for r in js(cli.ok("spam", "lists", "global", "--json"))}
    assert notes["*@old.example"] == "matches as @old.example"
    assert notes["spam*@old.example"].startswith("matches nothing")
    assert "removed" in cli.ok("spam", "unlist", "global", "spam*@old.example")


# --- services without mail ----------------------------------------------------------------


def test_user_without_mail_service_says_it_receives_no_mail(accounts: Cli) -> None:
    cli = accounts
    out = cli.ok("user", "set", ALICE, "--services", "calendar,contacts")
    assert "receives mail: no" in out
    shown = js(cli.ok("user", "show", ALICE, "--json"))
    assert shown["receives_mail"].startswith("no: services exclude mail")
    assert "5.2.1" in cli.ok("user", "show", ALICE)
    assert js(cli.ok("user", "show", BOB, "--json"))["receives_mail"] == "yes"
    cli.ok("forward", "set", ALICE, "alice@elsewhere.example")
    assert js(cli.ok("user", "show", ALICE, "--json"))["receives_mail"] == "forwarded only"
    out = js(cli.ok("user", "add", f"room@{D}", "--services", "calendar", "--json"))
    assert out["ok"] is True and out["notes"][0].startswith("receives mail: no")
    assert out["password"]  # generated: --json must carry it


# --- spam set under an enforced layer ---------------------------------------------------------


def test_spam_set_below_enforced_layer_says_so(accounts: Cli) -> None:
    cli = accounts
    cli.ok("spam", "set", "global", "--action", "folder", "--threshold", "5", "--enforce")
    r = cli("spam", "set", D, "--action", "discard")
    assert r.rc == 0
    assert "not in effect" in r.err and "global" in r.err and "folder at 5" in r.err
    assert len(r.err.strip().splitlines()) == 1
    cli.ok("spam", "set", "global", "--no-enforce")
    cli.ok("spam", "set", D, "--enforce")
    r = cli("spam", "set", ALICE, "--threshold", "9", "--json")
    assert r.rc == 0 and f"domain settings ({D}) are enforced" in r.err
    out = js(r.out)
    assert out["ok"] is True and out["effective"]["locked_by"] == "domain"
    assert out["own"]["threshold"] == 9 and "not in effect" in out["warnings"][0]
    # not overridden: no warning
    r = cli("spam", "set", D, "--threshold", "6")
    assert r.rc == 0 and r.err == ""


# --- domain limits below the current count --------------------------------------------------


def test_domain_limits_below_current_count_are_refused(accounts: Cli) -> None:
    cli = accounts
    err = cli.fails("domain", "set", D, "--max-mailboxes", "1")
    assert f"domain {D} has 2 mailboxes" in err and "below" in err
    cli.ok("domain", "set", D, "--max-mailboxes", "2")  # at the count: fine
    cli.ok("domain", "set", D, "--max-mailboxes", "0")  # unlimited: fine
    cli.ok("alias", "add", f"a1@{D}", ALICE)
    cli.ok("alias", "add", f"a2@{D}", ALICE)
    err = cli.fails("domain", "set", D, "--max-aliases", "1")
    assert "has 2 aliases" in err
    shown = js(cli.ok("domain", "show", D, "--json"))
    assert shown["max_mailboxes"] == 0 and shown["max_aliases"] == 0


# --- JSON: times and --json on every command -------------------------------------------------


def _times(value: Any, key: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _times(v, k)]
    if isinstance(value, list):
        return [t for v in value for t in _times(v, key)]
    return [(key, value)] if key in TIME_KEYS or key.endswith("_at") else []


def test_json_times_are_iso_utc_everywhere(accounts: Cli, tmp_path: Path) -> None:
    cli = accounts
    body = tmp_path / "body.txt"
    body.write_text("away\n")
    cli.ok("vacation", "set", ALICE, "--subject", "Away", "--body-file", str(body),
           "--from", "2030-01-01", "--until", "2030-01-02")  # fmt: skip
    cli.ok("relay", "add", "192.0.2.0/24", "--expires", "1h")
    cli.ok("spam", "block", D, "@bad.example")
    from mailwarden.store.db import Database

    db = Database(cli.url)
    with db.transaction() as tx:
        tx.execute("UPDATE mailboxes SET last_login = 1700000000 WHERE address = ?", (ALICE,))
    db.close()
    commands = [
        ("domain", "show", D), ("user", "show", ALICE), ("user", "list"),
        ("vacation", "show", ALICE), ("vacation", "list"), ("relay", "list"),
        ("quota", "show", ALICE), ("quota", "list"), ("spam", "lists", D),
    ]  # fmt: skip
    seen = set()
    for command in commands:
        for key, value in _times(js(cli.ok(*command, "--json"))):
            if value is not None:
                seen.add(key)
                assert isinstance(value, str) and ISO_UTC.match(value), (command, key, value)
    assert {"created_at", "last_login", "from", "until", "expires", "created"} <= seen
    shown = js(cli.ok("vacation", "show", ALICE, "--json"))
    assert "starts_at" not in shown and "ends_at" not in shown  # no epoch twins
    listed = js(cli.ok("user", "list", "--json"))
    assert {r["address"]: r["last_login"] for r in listed}[ALICE] == "2023-11-14T22:13:20Z"


def _verbs() -> list[tuple[str, str, argparse.ArgumentParser]]:
    root = cli_module.build_parser()
    found = []
    for action in root._subparsers._group_actions:  # type: ignore[union-attr]
        for family, parser in action.choices.items():  # type: ignore[union-attr]
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            for sub in subs:
                for verb, vparser in sub.choices.items():
                    found.append((family, verb, vparser))
    return found


ADMIN = ("db", "domain", "user", "alias", "forward", "relay", "group", "sendas", "spam",
         "vacation", "ratelimit", "quota")  # fmt: skip


def test_every_admin_verb_takes_json() -> None:
    missing = [
        f"{family} {verb}"
        for family, verb, parser in _verbs()
        if family in ADMIN and "--json" not in parser._option_string_actions
    ]
    assert missing == []


def test_changes_print_one_json_object(accounts: Cli) -> None:
    cli = accounts
    cases = [
        ("domain", "add", "example.org"),
        ("domain", "set", "example.org", "--max-message-size", "10M"),
        ("user", "add", f"carol@{D}", "--password-stdin"),
        ("user", "set", f"carol@{D}", "--quota", "1G"),
        ("user", "passwd", f"carol@{D}", "--password-stdin"),
        ("alias", "add", f"info@{D}", ALICE),
        ("alias", "remove", f"info@{D}"),
        ("forward", "set", BOB, "bob@elsewhere.example"),
        ("forward", "clear", BOB),
        ("relay", "add", "198.51.100.0/24"),
        ("relay", "remove", "198.51.100.0/24"),
        ("relay", "purge"),
        ("group", "add", "nopop", "--no-pop3"),
        ("sendas", "grant", ALICE, f"sales@{D}"),
        ("sendas", "revoke", ALICE, f"sales@{D}"),
        ("spam", "allow", ALICE, "@friends.example"),
        ("spam", "unlist", ALICE, "@friends.example"),
        ("ratelimit", "set", ALICE, "--per", "hour", "--messages", "100"),
        ("ratelimit", "remove", ALICE, "--per", "hour"),
        ("vacation", "off", ALICE),
        ("user", "remove", f"carol@{D}"),
        ("group", "remove", "nopop"),
        ("domain", "remove", "example.org"),
    ]
    for case in cases:
        out = js(cli.ok(*case, "--json", stdin="pw\n"))
        assert out["ok"] is True and isinstance(out["message"], str), (case, out)


# --- grammar -----------------------------------------------------------------------------------


def test_articles_in_messages(accounts: Cli) -> None:
    cli = accounts
    cli.ok("domain", "add", "example.net", "--alias-of", D)
    err = cli.fails("domain", "set", "example.net", "--max-mailboxes", "3")
    assert "not to an alias domain" in err
    cli.ok("domain", "add", "relay.example", "--relay")
    err = cli.fails("alias", "add", "x@relay.example", ALICE)
    assert "an alias needs a local domain" in err
    cli.ok("domain", "set", D, "--max-mailboxes", "2")
    assert "limit of 2 mailboxes" in cli.fails("user", "add", f"c@{D}", "--password-stdin",
                                               stdin="pw\n")  # fmt: skip
    cli.ok("domain", "set", D, "--max-aliases", "1")
    cli.ok("alias", "add", f"a1@{D}", ALICE)
    assert "limit of 1 alias" in cli.fails("alias", "add", f"a2@{D}", ALICE)
    assert "removed 1 destination of" in cli.ok("alias", "remove", f"a1@{D}", ALICE)
