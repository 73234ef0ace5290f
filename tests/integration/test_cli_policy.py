"""Policy commands end to end: relay, sendas, spam, vacation, ratelimit, quota, traffic.

Each test drives the real ``mailwarden`` CLI (in-process) against a fresh database of each
dialect (SQLite and MariaDB), checks output and one-line errors, and calls the store
functions the policy daemon and the delivery agent build on, with an explicit ``now``
instead of sleeping.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailwarden.core import ratelimit as core_ratelimit
from mailwarden.core.spamsettings import Effective, access_decision
from mailwarden.errors import Conflict, NotFound, StoreError
from mailwarden.store import quota, ratelimit, relay, scopes, spam, traffic, vacation
from mailwarden.store.db import Database
from tests.conftest import Cli

pytestmark = pytest.mark.integration

D = "example.test"
BOB = f"bob@{D}"
ALICE = f"alice@{D}"
EVIL = "x'); DROP TABLE relay_networks; --"
POLICY_TABLES = (
    "relay_networks",
    "sendas_grants",
    "spam_settings",
    "access_lists",
    "vacations",
    "vacation_log",
    "rate_limits",
    "rate_counters",
    "quota_usage",
    "traffic",
)


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def db(cli: Cli) -> Iterator[Database]:
    """The database the CLI writes, for store calls and checks."""
    database = Database(cli.url)
    yield database
    database.close()


@pytest.fixture
def accounts(cli: Cli) -> Cli:
    """example.test with bob and alice, other.test with carol, alias domain alias.test."""
    cli.ok("domain", "add", D)
    cli.ok("domain", "add", "other.test")
    cli.ok("domain", "add", "alias.test", "--alias-of", D)
    for address in (BOB, ALICE, "carol@other.test"):
        cli.ok("user", "add", address, "--password-stdin", stdin="pw\n")
    return cli


def query(db: Database, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with db.read() as tx:
        return tx.all(sql, params)


def snapshot(db: Database) -> dict[str, list[str]]:
    """Every row of the policy tables, for "a failed command changed nothing"."""
    with db.read() as tx:
        return {
            t: sorted(repr(sorted(r.items())) for r in tx.all(f"SELECT * FROM {t}"))
            for t in POLICY_TABLES
        }


def js(text: str) -> Any:
    return json.loads(text)


def local_epoch(*args: int) -> int:
    return int(datetime(*args).timestamp())  # type: ignore[arg-type]


def iso(ts: int) -> str:
    """How the CLI prints a time, JSON included: ISO 8601 UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mailbox_id(db: Database, address: str) -> int:
    with db.read() as tx:
        return scopes.mailbox(tx, address).id


def domain_id(db: Database, name: str) -> int:
    with db.read() as tx:
        return scopes.local_domain(tx, name)


# --- relay ------------------------------------------------------------------------------------


def test_relay_add_list_remove(cli: Cli) -> None:
    assert "relay network 192.0.2.7 added" in cli.ok("relay", "add", "192.0.2.7")
    out = cli.ok("relay", "add", "10.1.2.3/8", "--note", "office LAN")
    assert "host bits set; stored as 10.0.0.0/8" in out
    cli.ok("relay", "add", "2001:DB8::/32")
    cli.ok("relay", "add", "140.175.165.*")
    cli.ok("relay", "add", "::ffff:198.51.100.1")
    rows = js(cli.ok("relay", "list", "--json"))
    assert [r["network"] for r in rows] == [
        "10.0.0.0/8",
        "140.175.165.*",
        "192.0.2.7",
        "198.51.100.1",
        "2001:db8::/32",
    ]
    office = rows[0]
    assert office["note"] == "office LAN"
    assert office["status"] == "permanent" and office["expires"] is None
    assert office["expired"] is False
    assert office["source"] == "admin"  # or pop-before-smtp (relay allow-login)
    text = cli.ok("relay", "list")
    assert text.splitlines()[0].split() == ["NETWORK", "STATUS", "EXPIRES", "SOURCE", "NOTE"]

    assert "already exists" in cli.fails("relay", "add", "192.0.2.7/32")
    assert "already exists" in cli.fails("relay", "add", "10.9.9.9/8")
    # removal accepts any form that normalises to the stored one
    cli.ok("relay", "remove", "192.0.2.7/32")
    cli.ok("relay", "remove", "2001:db8:0::/32")
    assert "does not exist" in cli.fails("relay", "remove", "192.0.2.7")
    assert "does not exist" in cli.fails("relay", "remove", "garbage")
    left = [r["network"] for r in js(cli.ok("relay", "list", "--json"))]
    assert left == ["10.0.0.0/8", "140.175.165.*", "198.51.100.1"]


def test_relay_temporary_entry(cli: Cli) -> None:
    before = int(time.time())
    out = cli.ok("relay", "add", "192.0.2.0/24", "--expires", "2h")
    assert "added until" in out
    (row,) = js(cli.ok("relay", "list", "--json"))
    assert row["status"] == "temporary" and row["expired"] is False
    assert row["expires"].endswith("Z")  # ISO 8601 UTC, as every time the CLI prints
    expires = datetime.fromisoformat(row["expires"]).timestamp()
    assert before + 7200 <= expires <= int(time.time()) + 7200


def test_relay_expiry_with_explicit_now(cli: Cli, db: Database) -> None:
    now = 1_700_000_000
    with db.transaction() as tx:
        relay.add(tx, "192.0.2.0/24", now=now, expires_at=now + 60, note="pop-before-smtp")
        relay.add(tx, "10.*.*.*", now=now)
    with db.read() as tx:
        assert relay.active_networks(tx, now) == ["10.*.*.*", "192.0.2.0/24"]
        assert relay.active_networks(tx, now + 59) == ["10.*.*.*", "192.0.2.0/24"]
        # expired exactly at expires_at
        assert relay.active_networks(tx, now + 60) == ["10.*.*.*"]
        assert len(relay.list_networks(tx, now + 60, include_expired=True)) == 2
    # the real clock is far past 'now + 60': the CLI hides the entry, --all shows it
    assert [r["network"] for r in js(cli.ok("relay", "list", "--json"))] == ["10.*.*.*"]
    rows = js(cli.ok("relay", "list", "--all", "--json"))
    expired = next(r for r in rows if r["network"] == "192.0.2.0/24")
    assert expired["expired"] is True and expired["status"] == "expired"
    assert "expired" in cli.ok("relay", "list", "--all")
    # re-adding an expired entry replaces it
    with db.transaction() as tx:
        relay.add(tx, "192.0.2.0/24", now=now + 100, expires_at=now + 200)
        assert relay.active_networks(tx, now + 150) == ["10.*.*.*", "192.0.2.0/24"]
        with pytest.raises(Conflict):
            relay.add(tx, "192.0.2.0/24", now=now + 150)
    with db.transaction() as tx:
        assert relay.purge(tx, now + 150) == 0
        assert relay.purge(tx, now + 200) == 1
        assert relay.active_networks(tx, now) == ["10.*.*.*"]


def test_relay_purge_cli(cli: Cli, db: Database) -> None:
    past = int(time.time()) - 3600
    with db.transaction() as tx:
        relay.add(tx, "192.0.2.1", now=past, expires_at=past + 60)
        relay.add(tx, "192.0.2.2", now=past, expires_at=past + 120)
    cli.ok("relay", "add", "192.0.2.3", "--expires", "1d")
    assert "purged 2 expired relay networks" in cli.ok("relay", "purge")
    assert "purged 0 expired" in cli.ok("relay", "purge")
    assert [r["network"] for r in js(cli.ok("relay", "list", "--all", "--json"))] == ["192.0.2.3"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-an-ip"], "invalid network"),
        (["256.0.0.1"], "invalid network"),
        (["10.0.0.0/33"], "invalid network"),
        (["10.*.3.*"], "trailing parts"),
        (["10.*"], "four dotted parts"),
        (["0.0.0.0/0"], "open relay"),
        (["::/0"], "open relay"),
        (["*.*.*.*"], "open relay"),
        (["fe80::1%eth0"], "invalid network"),
        ([EVIL], "invalid network"),
        (["192.0.2.1", "--expires", "5x"], "invalid duration"),
        (["192.0.2.1", "--expires", "0"], "longer than 0"),
        (["192.0.2.1", "--expires=-1h"], "invalid duration"),
        (["192.0.2.1", "--note", "two\nlines"], "control characters"),
        (["192.0.2.1", "--note", "x" * 256], "longer than 255"),
    ],
)
def test_relay_bad_input(cli: Cli, db: Database, args: list[str], message: str) -> None:
    before = snapshot(db)
    assert message in cli.fails("relay", "add", *args)
    assert snapshot(db) == before


def test_relay_note_stored_verbatim(cli: Cli, db: Database) -> None:
    cli.ok("relay", "add", "192.0.2.9", "--note", EVIL)
    assert js(cli.ok("relay", "list", "--json"))[0]["note"] == EVIL
    assert query(db, "SELECT note FROM relay_networks")[0]["note"] == EVIL


# --- sendas -----------------------------------------------------------------------------------


def test_sendas_flow(accounts: Cli, db: Database) -> None:
    cli = accounts
    assert f"{BOB} may now send as boss@other.test" in cli.ok(
        "sendas", "grant", "Bob@Example.TEST", "Boss@Other.Test"
    )
    cli.ok("sendas", "grant", BOB, "@partner.test")
    cli.ok("sendas", "grant", ALICE, "@partner.test")
    assert js(cli.ok("sendas", "list", "--json")) == [
        {"login": ALICE, "address": "@partner.test"},
        {"login": BOB, "address": "@partner.test"},
        {"login": BOB, "address": "boss@other.test"},
    ]
    assert js(cli.ok("sendas", "list", ALICE, "--json")) == [
        {"login": ALICE, "address": "@partner.test"}
    ]
    assert "may already send as" in cli.fails("sendas", "grant", BOB, "boss@other.test")
    # Postfix sees the grants through smtpd_sender_login_maps
    rows = query(
        db, "SELECT login FROM postfix_sender_login WHERE sender = ?", ("boss@other.test",)
    )
    assert [r["login"] for r in rows] == [BOB]
    cli.ok("sendas", "revoke", BOB, "BOSS@other.test")
    assert "has no send-as grant" in cli.fails("sendas", "revoke", BOB, "boss@other.test")
    assert js(cli.ok("sendas", "list", BOB, "--json")) == [
        {"login": BOB, "address": "@partner.test"}
    ]
    # grants go with their mailbox
    cli.ok("user", "remove", BOB)
    assert js(cli.ok("sendas", "list", "--json")) == [{"login": ALICE, "address": "@partner.test"}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["grant", "nobody@example.test", "x@other.test"], "does not exist"),
        (["grant", BOB, "not an address"], "invalid address"),
        (["grant", BOB, "@"], "invalid address"),
        (["grant", "not-an-address", "x@other.test"], "invalid address"),
        (["revoke", "nobody@example.test", "x@other.test"], "does not exist"),
        (["list", "nobody@example.test"], "does not exist"),
    ],
)
def test_sendas_bad_input(accounts: Cli, db: Database, args: list[str], message: str) -> None:
    before = snapshot(db)
    assert message in accounts.fails("sendas", *args)
    assert snapshot(db) == before


def test_sendas_injection_stored_verbatim(accounts: Cli, db: Database) -> None:
    tricky = "o'brien--@other.test"
    accounts.ok("sendas", "grant", BOB, tricky)
    assert js(accounts.ok("sendas", "list", BOB, "--json"))[0]["address"] == tricky
    assert query(db, "SELECT COUNT(*) AS n FROM mailboxes")[0]["n"] == 3


# --- spam settings ----------------------------------------------------------------------------


def test_spam_settings_layering(accounts: Cli, db: Database) -> None:
    cli = accounts
    shown = js(cli.ok("spam", "show", "global", "--json"))
    assert shown["own"] == {"action": "folder", "threshold": 5.0, "enforce": False}
    assert shown["effective"]["action"] == "folder"

    cli.ok("spam", "set", D, "--action", "reject")
    cli.ok("spam", "set", BOB, "--threshold", "3.5")
    bob = js(cli.ok("spam", "show", BOB, "--json"))
    assert bob["kind"] == "mailbox"
    assert bob["own"] == {"action": None, "threshold": 3.5, "enforce": False}
    assert bob["effective"] == {
        "action": "reject",
        "threshold": 3.5,
        "source": "mailbox",
        "locked_by": None,
    }
    dom = js(cli.ok("spam", "show", "Example.Test", "--json"))
    assert dom["own"]["action"] == "reject"
    assert dom["effective"]["threshold"] == 5.0
    # a mailbox without a row shows none and inherits
    alice = js(cli.ok("spam", "show", ALICE, "--json"))
    assert alice["own"] is None
    assert alice["effective"]["action"] == "reject"

    # the domain enforces: bob's own threshold no longer counts
    cli.ok("spam", "set", D, "--enforce")
    bob = js(cli.ok("spam", "show", BOB, "--json"))
    assert bob["effective"]["threshold"] == 5.0 and bob["effective"]["locked_by"] == "domain"
    # global enforces: the domain's action no longer counts either
    cli.ok("spam", "set", "global", "--enforce", "--threshold", "6")
    with db.read() as tx:
        assert spam.effective_for(tx, BOB) == Effective("folder", 6.0, "global", "global")
    cli.ok("spam", "set", "global", "--no-enforce")
    cli.ok("spam", "set", D, "--no-enforce")
    with db.read() as tx:
        assert spam.effective_for(tx, BOB) == Effective("reject", 3.5, "mailbox")
        # unknown recipients get global plus their domain, if any
        assert spam.effective_for(tx, "ghost@example.test").action == "reject"
        assert spam.effective_for(tx, "someone@elsewhere.test").action == "folder"

    # inherit clears a value; options not given keep theirs
    cli.ok("spam", "set", BOB, "--action", "tag")
    cli.ok("spam", "set", BOB, "--threshold", "inherit")
    assert js(cli.ok("spam", "show", BOB, "--json"))["own"] == {
        "action": "tag",
        "threshold": None,
        "enforce": False,
    }
    text = cli.ok("spam", "show", BOB)
    assert "effective action" in text and "tag" in text

    # rows go with their mailbox or domain
    cli.ok("user", "remove", BOB)
    assert query(db, "SELECT scope FROM spam_settings WHERE scope = ?", (BOB,)) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", D, "--action", "bounce"], "invalid action"),
        (["set", D, "--threshold", "-1"], "between 0 and 100000"),
        (["set", D, "--threshold", "nan"], "between 0 and 100000"),
        (["set", D, "--threshold", "1e9"], "between 0 and 100000"),
        (["set", D, "--threshold", "five"], "invalid threshold"),
        (["set", D], "nothing to set"),
        (["set", "global", "--action", "inherit"], "cannot inherit"),
        (["set", BOB, "--enforce"], "global and domain scopes"),
        (["set", "nowhere.test", "--action", "tag"], "does not exist"),
        (["set", "ghost@example.test", "--action", "tag"], "does not exist"),
        (["set", "alias.test", "--action", "tag"], "alias domain"),
        (["set", "192.0.2.1", "--action", "tag"], "only valid for rate limits"),
        (["set", EVIL, "--action", "tag"], "invalid scope"),
        (["show", "nowhere.test"], "does not exist"),
        (["allow", D, "not a pattern"], "invalid pattern"),
        (["block", D, "user@*"], "invalid pattern"),
        (["block", "global", "0.0.0.0/0"], "every client address"),
        (["allow", "nowhere.test", "x@y.test"], "does not exist"),
        (["unlist", D, "x@y.test"], "is on no list"),
        (["lists", "ghost@example.test"], "does not exist"),
    ],
)
def test_spam_bad_input(accounts: Cli, db: Database, args: list[str], message: str) -> None:
    before = snapshot(db)
    assert message in accounts.fails("spam", *args)
    assert snapshot(db) == before


def test_spam_lists(accounts: Cli, db: Database) -> None:
    cli = accounts
    assert "added to the block list of global" in cli.ok("spam", "block", "global", "@Bad.Test")
    cli.ok("spam", "block", "global", "192.0.2.0/24")
    cli.ok("spam", "allow", D, "friend@bad.test")
    cli.ok("spam", "allow", BOB, "@bad.test")
    out = cli.ok("spam", "block", BOB, "@BAD.test")
    assert "moved from the allow to the block list" in out
    assert "already on the block list" in cli.ok("spam", "block", BOB, "@bad.test")
    cli.ok("spam", "allow", BOB, "192.0.2.66/32")
    # one pattern is on one list per scope; times are ISO 8601 UTC
    rows = js(cli.ok("spam", "lists", BOB, "--json"))
    for row in rows:
        created = datetime.fromisoformat(row.pop("created_at")).timestamp()
        assert abs(created - time.time()) < 60
    assert rows == [
        {"scope": BOB, "kind": "allow", "pattern": "192.0.2.66", "note": None},
        {"scope": BOB, "kind": "block", "pattern": "@bad.test", "note": None},
    ]
    assert "PATTERN" in cli.ok("spam", "lists", "global")

    with db.read() as tx:
        assert sorted(spam.lists_for(tx, BOB)) == [
            ("domain", "allow", "friend@bad.test"),
            ("global", "block", "192.0.2.0/24"),
            ("global", "block", "@bad.test"),
            ("mailbox", "allow", "192.0.2.66"),
            ("mailbox", "block", "@bad.test"),
        ]
        cases = [
            (BOB, "friend@bad.test", "203.0.113.1", "block"),
            (ALICE, "friend@bad.test", "203.0.113.1", "allow"),
            (ALICE, "other@bad.test", "203.0.113.1", "block"),
            (BOB, "x@good.test", "192.0.2.66", "allow"),
            (ALICE, "x@good.test", "192.0.2.66", "block"),
            ("carol@other.test", "x@good.test", "203.0.113.1", None),
        ]
        for rcpt, sender, client, expected in cases:
            lists = spam.access_lists(tx, rcpt)  # the store reads; core decides
            assert access_decision(lists, sender, client) == expected, (rcpt, sender, client)

    # an enforced global block cannot be undone by a lower allow
    cli.ok("spam", "set", "global", "--enforce")
    with db.read() as tx:
        assert access_decision(spam.access_lists(tx, BOB), "x@good.test", "192.0.2.66") == "block"
        assert spam.layers_for(tx, BOB).enforce_flags == {
            "global": True,
            "domain": False,
            "mailbox": False,
        }

    cli.ok("spam", "unlist", BOB, "192.0.2.66")
    assert [r["pattern"] for r in js(cli.ok("spam", "lists", BOB, "--json"))] == ["@bad.test"]


def test_spam_pattern_stored_verbatim(accounts: Cli, db: Database) -> None:
    tricky = "x'or'1'='1@evil.test"
    accounts.ok("spam", "block", "global", tricky)
    assert query(db, "SELECT pattern FROM access_lists")[0]["pattern"] == tricky
    assert js(accounts.ok("spam", "lists", "global", "--json"))[0]["pattern"] == tricky
    accounts.ok("spam", "unlist", "global", tricky)
    assert query(db, "SELECT COUNT(*) AS n FROM access_lists")[0]["n"] == 0


# --- vacation ---------------------------------------------------------------------------------


@pytest.fixture
def body(tmp_path: Path) -> Path:
    path = tmp_path / "away.txt"
    path.write_text("I am away until Monday.\nGrüße, Bob\n", encoding="utf-8")
    return path


def test_vacation_flow(accounts: Cli, db: Database, body: Path) -> None:
    cli = accounts
    out = cli.ok(
        "vacation", "set", BOB, "--subject", "Away", "--body-file", str(body),
        "--from", "2030-01-10", "--until", "2030-01-12", "--interval", "1d",
    )  # fmt: skip
    assert f"vacation reply of {BOB} is on" in out
    shown = js(cli.ok("vacation", "show", BOB, "--json"))
    assert shown["subject"] == "Away"
    assert shown["body"] == "I am away until Monday.\nGrüße, Bob\n"
    assert shown["from"] == iso(local_epoch(2030, 1, 10))
    assert shown["until"] == iso(local_epoch(2030, 1, 13))  # --until includes the whole day
    assert shown["interval_seconds"] == 86400
    assert shown["active"] is True and shown["in_effect"] is False
    assert js(cli.ok("vacation", "list", "--json"))[0]["address"] == BOB
    assert "SUBJECT" in cli.ok("vacation", "list")

    box = mailbox_id(db, BOB)
    with db.read() as tx:
        vac = vacation.get(tx, box)
    assert vac is not None
    assert vac.in_effect(local_epoch(2030, 1, 10)) and vac.in_effect(local_epoch(2030, 1, 12, 23))
    assert not vac.in_effect(local_epoch(2030, 1, 13)) and not vac.in_effect(
        local_epoch(2030, 1, 9)
    )

    assert "is off" in cli.ok("vacation", "off", BOB)
    assert "(it was not on)" in cli.ok("vacation", "off", BOB)
    shown = js(cli.ok("vacation", "show", BOB, "--json"))
    assert shown["active"] is False and shown["subject"] == "Away"

    # set again: on, defaults (no dates, 7 days), body from stdin
    cli.ok("vacation", "set", BOB, "--subject", "Back soon", "--body-file", "-", stdin="brb\n")
    shown = js(cli.ok("vacation", "show", BOB, "--json"))
    assert shown["active"] is True and shown["in_effect"] is True
    assert shown["from"] is None and shown["until"] is None
    assert shown["interval_seconds"] == 7 * 86400 and shown["body"] == "brb\n"
    assert "no vacation reply" in cli.fails("vacation", "show", ALICE)
    assert js(cli.ok("vacation", "list", "--json"))[0]["subject"] == "Back soon"


def test_vacation_dates(accounts: Cli, body: Path) -> None:
    def set_(*args: str) -> dict[str, Any]:
        accounts.ok("vacation", "set", BOB, "--subject", "S", "--body-file", str(body), *args)
        return js(accounts.ok("vacation", "show", BOB, "--json"))  # type: ignore[no-any-return]

    shown = set_("--from", "2030-01-01T10:00+02:00", "--until", "2030-01-01T12:30:00Z")
    assert shown["from"] == "2030-01-01T08:00:00Z" == iso(1893484800)
    assert shown["until"] == "2030-01-01T12:30:00Z"
    shown = set_("--from", "2030-01-01 08:15", "--until", "2030-01-01")  # same day: fine
    assert shown["from"] == iso(local_epoch(2030, 1, 1, 8, 15))
    assert shown["until"] == iso(local_epoch(2030, 1, 2))
    out = accounts.ok(
        "vacation", "set", BOB, "--subject", "S", "--body-file", str(body), "--until", "2001-01-01"
    )
    assert "it ended already" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2030-01-10", "--until", "2030-01-05"], "is not after"),
        (["--from", "2030-01-01T12:00", "--until", "2030-01-01T11:00"], "is not after"),
        (["--from", "2030-01-01T12:00", "--until", "2030-01-01T12:00"], "is not after"),
        (["--from", "2030-13-01"], "invalid date"),
        (["--from", "2030-02-30"], "invalid date"),
        (["--until", "tomorrow"], "invalid date"),
        (["--until", "20300101"], "invalid date"),
        (["--from", EVIL], "invalid date"),
        (["--interval", "7x"], "invalid duration"),
        (["--interval", "0"], "longer than 0"),
        (["--subject", "two\r\nBcc: victim@x.test"], "control characters"),
        (["--subject", "   "], "is empty"),
        (["--subject", "s" * 256], "longer than 255"),
    ],
)
def test_vacation_bad_input(
    accounts: Cli, db: Database, body: Path, args: list[str], message: str
) -> None:
    before = snapshot(db)
    base = ["vacation", "set", BOB, "--body-file", str(body)]
    if "--subject" not in args:
        base += ["--subject", "Away"]
    assert message in accounts.fails(*base, *args)
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("dir", "Is a directory"),
        (b"\xff\xfe caf\xe9", "not UTF-8"),
        (b"", "is empty"),
        (b" \n\t\n", "is empty"),
        (b"a\x00b", "NUL"),
        (b"x" * 65536, "larger than 65535 bytes"),
    ],
)
def test_vacation_bad_body(
    accounts: Cli, db: Database, tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "body.txt"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    before = snapshot(db)
    err = accounts.fails("vacation", "set", BOB, "--subject", "S", "--body-file", str(path))
    assert message in err and str(path) in err
    assert snapshot(db) == before


def test_vacation_largest_body_and_verbatim_text(accounts: Cli, tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    big = ("ä" * 32767) + "x"  # 65535 bytes of UTF-8: the most a MariaDB TEXT holds
    path.write_text(big, encoding="utf-8")
    accounts.ok("vacation", "set", BOB, "--subject", EVIL, "--body-file", str(path))
    shown = js(accounts.ok("vacation", "show", BOB, "--json"))
    assert shown["body"] == big and shown["subject"] == EVIL


def test_vacation_unknown_mailbox(accounts: Cli, body: Path) -> None:
    err = accounts.fails(
        "vacation", "set", "ghost@example.test", "--subject", "S", "--body-file", str(body)
    )
    assert "does not exist" in err
    assert "does not exist" in accounts.fails("vacation", "off", "ghost@example.test")
    assert "invalid address" in accounts.fails("vacation", "show", "ghost")


def test_vacation_reply_log(accounts: Cli, db: Database, body: Path) -> None:
    box = mailbox_id(db, BOB)
    now, day = 1_900_000_000, 86400
    with db.transaction() as tx:
        assert not vacation.already_replied(tx, box, "Sender@Else.Test", now, 7 * day)
        vacation.record_reply(tx, box, "Sender@Else.Test", now)
        vacation.record_reply(tx, box, "sender@else.test", now + 10)  # upsert, same sender
    with db.read() as tx:
        assert query_count(tx, "vacation_log") == 1
        assert vacation.already_replied(tx, box, "SENDER@else.test", now + 10, 7 * day)
        assert vacation.already_replied(
            tx, box, "sender@else.test", now + 10 + 7 * day - 1, 7 * day
        )
        assert not vacation.already_replied(
            tx, box, "sender@else.test", now + 10 + 7 * day, 7 * day
        )
        assert not vacation.already_replied(tx, box, "other@else.test", now, 7 * day)
        assert vacation.already_replied(tx, box, "x" * 400 + "@else.test", now, day)
    # a new message is sent once to everybody again
    accounts.ok("vacation", "set", BOB, "--subject", "New", "--body-file", str(body))
    with db.read() as tx:
        assert not vacation.already_replied(tx, box, "sender@else.test", now + 20, 7 * day)


def query_count(tx: Any, table: str) -> int:
    return int(tx.scalar(f"SELECT COUNT(*) FROM {table}"))


def test_vacation_set_is_one_transaction(
    accounts: Cli, db: Database, body: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts.ok("vacation", "set", BOB, "--subject", "First", "--body-file", str(body))
    box = mailbox_id(db, BOB)
    with db.transaction() as tx:
        vacation.record_reply(tx, box, "a@else.test", 1)
    before = snapshot(db)

    def boom(tx: Any, mailbox_id: int) -> None:
        raise StoreError("database error: simulated failure after the first write")

    monkeypatch.setattr(vacation, "clear_log", boom)
    err = accounts.fails("vacation", "set", BOB, "--subject", "Second", "--body-file", str(body))
    assert "simulated failure" in err
    assert snapshot(db) == before
    assert js(accounts.ok("vacation", "show", BOB, "--json"))["subject"] == "First"


# --- rate limits ------------------------------------------------------------------------------


def test_ratelimit_flow(accounts: Cli) -> None:
    cli = accounts
    out = cli.ok("ratelimit", "set", D, "--per", "hour", "--messages", "100")
    assert "100 messages, unlimited recipients" in out
    cli.ok("ratelimit", "set", D, "--per", "day", "--recipients", "1000")
    cli.ok("ratelimit", "set", BOB, "--per", "HOUR", "--messages", "10", "--recipients", "50")
    cli.ok("ratelimit", "set", "192.0.2.0/24", "--per", "day", "--messages", "500")
    cli.ok("ratelimit", "set", "2001:db8::1", "--per", "hour", "--recipients", "5")
    # unspecified values are kept
    cli.ok("ratelimit", "set", BOB, "--per", "hour", "--recipients", "60")
    rows = js(cli.ok("ratelimit", "list", "--json"))
    assert {(r["scope"], r["kind"], r["period"], r["messages"], r["recipients"]) for r in rows} == {
        ("client:192.0.2.0/24", "client", "day", 500, 0),
        ("client:2001:db8::1", "client", "hour", 0, 5),
        (D, "domain", "hour", 100, 0),
        (D, "domain", "day", 0, 1000),
        (BOB, "mailbox", "hour", 10, 60),
    }
    assert "RECIPIENTS" in cli.ok("ratelimit", "list")
    cli.ok("ratelimit", "remove", "192.0.2.7/24", "--per", "day")
    cli.ok("ratelimit", "remove", "client:2001:db8::1", "--per", "hour")
    assert "no rate limit" in cli.fails("ratelimit", "remove", BOB, "--per", "day")
    assert len(js(cli.ok("ratelimit", "list", "--json"))) == 3
    cli.ok("user", "remove", BOB)
    assert len(js(cli.ok("ratelimit", "list", "--json"))) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", D, "--per", "week", "--messages", "1"], "invalid period"),
        (["set", D, "--per", "hour", "--messages", "-1"], "between 0 and"),
        (["set", D, "--per", "hour", "--messages", "ten"], "whole number"),
        (["set", D, "--per", "hour", "--recipients", "99999999999"], "between 0 and"),
        (["set", D, "--per", "hour"], "nothing to set"),
        (["set", "global", "--per", "hour", "--messages", "1"], "'global' is not valid"),
        (["set", "nowhere.test", "--per", "hour", "--messages", "1"], "does not exist"),
        (["set", "ghost@example.test", "--per", "hour", "--messages", "1"], "does not exist"),
        (["set", "alias.test", "--per", "hour", "--messages", "1"], "alias domain"),
        (["set", "10.0.0.0/40", "--per", "hour", "--messages", "1"], "invalid network"),
        (["set", EVIL, "--per", "hour", "--messages", "1"], "invalid scope"),
        (["remove", D, "--per", "hour"], "no rate limit"),
        (["remove", D, "--per", "minute"], "invalid period"),
    ],
)
def test_ratelimit_bad_input(accounts: Cli, db: Database, args: list[str], message: str) -> None:
    before = snapshot(db)
    assert message in accounts.fails("ratelimit", *args)
    assert snapshot(db) == before


def test_ratelimit_limits_for(accounts: Cli, db: Database) -> None:
    cli = accounts
    cli.ok("ratelimit", "set", D, "--per", "hour", "--messages", "100")
    cli.ok("ratelimit", "set", D, "--per", "day", "--messages", "1000")
    cli.ok("ratelimit", "set", BOB, "--per", "hour", "--messages", "10")
    cli.ok("ratelimit", "set", ALICE, "--per", "day", "--messages", "0", "--recipients", "0")
    cli.ok("ratelimit", "set", "192.0.2.0/24", "--per", "hour", "--recipients", "50")
    cli.ok("ratelimit", "set", "192.0.2.128/25", "--per", "hour", "--recipients", "20")
    cli.ok("ratelimit", "set", "192.0.0.0/16", "--per", "day", "--recipients", "900")
    with db.read() as tx:
        rows = ratelimit.limit_rows(tx)

    def limits_for(login: str, client: str) -> list[core_ratelimit.Limit]:
        return core_ratelimit.applicable(rows, login, client)  # the store reads; core decides

    bob = limits_for(BOB, "unknown")
    assert [(lim.key, lim.period, lim.max_messages) for lim in bob] == [
        (f"login:{BOB}", "day", 1000),  # the domain's
        (f"login:{BOB}", "hour", 10),  # own row wins over the domain's
    ]
    # alice's own 0/0 day row: unlimited per day, the domain's hour still applies
    alice = limits_for(ALICE, "")
    assert [(lim.period, lim.max_messages) for lim in alice] == [("hour", 100)]
    assert limits_for("carol@other.test", "198.51.100.1") == []
    assert limits_for("", "not-an-ip") == []
    # the most specific client network's rows only (192.0.2.128/25: not the /16's day row)
    client = limits_for("", "::ffff:192.0.2.200")
    assert [(lim.key, lim.period, lim.max_recipients) for lim in client] == [
        ("client:192.0.2.200", "hour", 20)
    ]
    assert [(lim.period, lim.max_recipients) for lim in limits_for("", "192.0.9.9")] == [
        ("day", 900)
    ]
    both = limits_for(BOB, "192.0.2.1")
    assert [lim.key for lim in both] == [f"login:{BOB}", f"login:{BOB}", "client:192.0.2.1"]


def test_ratelimit_counters(cli: Cli, db: Database) -> None:
    key, start = "login:bob@example.test", 1_700_000_000 - 1_700_000_000 % 3600
    with db.transaction() as tx:
        assert ratelimit.usage(tx, key, "hour", start) == ratelimit.Usage(0, 0)
        ratelimit.add_usage(tx, key, "hour", start, 1, 5)
        ratelimit.add_usage(tx, key, "hour", start, 1, 2)
        ratelimit.add_usage(tx, key, "hour", start + 3600, 1, 1)
        ratelimit.add_usage(tx, key, "day", start, 1, 1)
    with db.read() as tx:
        assert ratelimit.usage(tx, key, "hour", start) == ratelimit.Usage(2, 7)
        assert ratelimit.usage(tx, key, "hour", start + 3600) == ratelimit.Usage(1, 1)
    with db.transaction() as tx:
        assert ratelimit.purge_counters(tx, start + 1) == 2
        assert ratelimit.usage(tx, key, "hour", start) == ratelimit.Usage(0, 0)


def test_ratelimit_counters_concurrent(cli: Cli) -> None:
    """Concurrent upserts from separate connections add up (none lost, no conflict)."""
    key, start, threads, rounds = "client:192.0.2.1", 1_700_000_000, 6, 15
    errors: list[BaseException] = []

    def worker() -> None:
        database = Database(cli.url, connect_timeout=30)
        try:
            for _ in range(rounds):
                with database.transaction() as tx:
                    ratelimit.add_usage(tx, key, "day", start, 1, 3)
        except BaseException as exc:
            errors.append(exc)
        finally:
            database.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert errors == []
    database = Database(cli.url)
    try:
        with database.read() as tx:
            total = ratelimit.usage(tx, key, "day", start)
    finally:
        database.close()
    assert total == ratelimit.Usage(threads * rounds, 3 * threads * rounds)


# --- quota ------------------------------------------------------------------------------------


def test_quota_show_and_list(accounts: Cli, db: Database) -> None:
    cli = accounts
    cli.ok(
        "user",
        "add",
        f"dave@{D}",
        "--password-stdin",
        "--quota",
        "1M",
        "--quota-messages",
        "100",
        stdin="pw\n",
    )
    shown = js(cli.ok("quota", "show", f"dave@{D}", "--json"))
    assert shown["quota_bytes"] == 1024 * 1024 and shown["quota_messages"] == 100
    assert shown["used_bytes"] is None and shown["percent"] is None

    dave, bob, alice = (mailbox_id(db, a) for a in (f"dave@{D}", BOB, ALICE))
    with db.transaction() as tx:
        quota.set_usage(tx, dave, 512 * 1024, 10, 1_900_000_000)
        quota.set_warned(tx, dave, 50)
        quota.set_usage(tx, dave, 943_718, 95, 1_900_000_100)  # upsert keeps warned_percent
        quota.set_usage(tx, bob, 5 * 1024**3, 1, 1_900_000_100)
    with db.read() as tx:
        assert quota.usage(tx, dave) == quota.QuotaUsage(943_718, 95, 50, 1_900_000_100)
        assert quota.usage(tx, alice) is None
    shown = js(cli.ok("quota", "show", f"Dave@{D}", "--json"))
    assert shown["used_bytes"] == 943_718 and shown["used_messages"] == 95
    assert shown["percent"] == 95.0  # the higher of bytes (90 %) and messages (95 %)
    text = cli.ok("quota", "show", f"dave@{D}")
    assert "95%" in text and "1M, 100 messages" in text

    rows = js(cli.ok("quota", "list", "--json"))
    assert [r["address"] for r in rows] == [ALICE, BOB, "carol@other.test", f"dave@{D}"]
    assert [r["address"] for r in js(cli.ok("quota", "list", "--over", "90", "--json"))] == [
        f"dave@{D}"
    ]
    assert js(cli.ok("quota", "list", "--over", "96", "--json")) == []
    # unlimited mailboxes are never "over", however much they hold
    assert f"dave@{D}" in cli.ok("quota", "list", "--over", "0")
    assert BOB not in cli.ok("quota", "list", "--over", "0")
    assert [
        r["address"] for r in js(cli.ok("quota", "list", "--domain", "other.test", "--json"))
    ] == ["carol@other.test"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "ghost@example.test"], "does not exist"),
        (["show", "not-an-address"], "invalid address"),
        (["list", "--domain", "nowhere.test"], "does not exist"),
        (["list", "--domain", "bad domain"], "invalid domain"),
        (["list", "--over", "lots"], "invalid --over"),
        (["list", "--over", "-5"], "must be a number >= 0"),
    ],
)
def test_quota_bad_input(accounts: Cli, args: list[str], message: str) -> None:
    assert message in accounts.fails("quota", *args)


# --- traffic ----------------------------------------------------------------------------------


def test_traffic_report(accounts: Cli, db: Database) -> None:
    cli = accounts
    example, other = domain_id(db, D), domain_id(db, "other.test")
    with db.transaction() as tx:
        traffic.add(tx, example, "2030-01-02", messages_in=1, bytes_in=1000)
        traffic.add(
            tx, example, "2030-01-02", messages_in=2, bytes_in=500, messages_out=1, bytes_out=70
        )
        traffic.add(tx, other, "2030-01-03", messages_out=4, bytes_out=4000)
    report = js(cli.ok("traffic", "--day", "2030-01-02", "--json"))
    assert report == {
        "day": "2030-01-02",
        "domains": [
            {"domain": D, "messages_in": 3, "bytes_in": 1500, "messages_out": 1, "bytes_out": 70},
            {
                "domain": "other.test",
                "messages_in": 0,
                "bytes_in": 0,
                "messages_out": 0,
                "bytes_out": 0,
            },
        ],
    }  # alias.test is not a local domain: not listed
    text = cli.ok("traffic", "--day", "2030-01-03")
    assert "2030-01-03" in text and "4000" in text
    today = js(cli.ok("traffic", "--json"))
    assert today["day"] == datetime.now(UTC).date().isoformat()
    assert all(r["messages_in"] == 0 for r in today["domains"])
    with db.transaction() as tx, pytest.raises(Conflict):
        traffic.add(tx, 999_999, "2030-01-02", messages_in=1)


@pytest.mark.parametrize("day", ["2030-02-30", "yesterday", "20300101", "2030-1-2", EVIL])
def test_traffic_bad_day(accounts: Cli, day: str) -> None:
    assert "invalid day" in accounts.fails("traffic", "--day", day)


# --- scopes -----------------------------------------------------------------------------------


def test_scope_resolution(accounts: Cli, db: Database) -> None:
    example, bob = domain_id(db, D), mailbox_id(db, BOB)
    with db.read() as tx:
        assert scopes.resolve(tx, "GLOBAL") == scopes.Scope("global", "global")
        dom = scopes.resolve(tx, "Example.Test")
        assert dom.kind == "domain" and dom.name == D and dom.domain_id == example
        box = scopes.resolve(tx, "BOB@example.test")
        assert box == scopes.Scope("mailbox", BOB, None, bob)
        assert scopes.resolve(tx, "192.0.2.1/24", clients=True) == scopes.Scope(
            "client", "client:192.0.2.0/24"
        )
        with pytest.raises(NotFound):
            scopes.resolve(tx, "nowhere.test")
        with pytest.raises(NotFound):
            scopes.resolve(tx, "ghost@example.test")
