"""``mailwarden quota recalc`` and ``user remove``'s usage rows, on SQLite and MariaDB.

The real CLI (in-process) on a fresh database of each dialect and real Maildirs below
the configuration's mail root: ``recalc`` counts what is on disk (every folder but
Trash), rewrites ``maildirsize`` and stores the sums in ``quota_usage``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.store.db import Database
from tests.conftest import Cli

pytestmark = pytest.mark.integration

D = "example.test"


def _rows(cli: Cli, sql: str, *params: object) -> list[dict[str, object]]:
    db = Database(cli.url)
    try:
        with db.read() as tx:
            return tx.all(sql, params)
    finally:
        db.close()


def _usage(cli: Cli, address: str) -> tuple[int, int] | None:
    rows = _rows(
        cli,
        "SELECT u.bytes, u.messages FROM quota_usage u JOIN mailboxes m ON m.id = u.mailbox_id"
        " WHERE m.address = ?",
        address,
    )
    return (int(str(rows[0]["bytes"])), int(str(rows[0]["messages"]))) if rows else None


def _maildir(cli: Cli, user: str) -> Path:
    return Path(config.load(str(cli.config_path)).mail.root) / D / user


def _put(box: Path, folder: str, sub: str, name: str, data: bytes) -> None:
    d = box / folder / sub if folder else box / sub
    d.mkdir(parents=True, exist_ok=True)
    for s in ("tmp", "new", "cur"):
        (d.parent / s).mkdir(exist_ok=True)
    (d / name).write_bytes(data)


def test_recalc_counts_the_maildirs_and_stores_the_sums(cli: Cli) -> None:
    cli.ok("domain", "add", D)
    for user in ("alice", "bob", "carol"):
        cli.ok(
            "user", "add", "--password-stdin", f"{user}@{D}", "--quota", "1M", stdin="pw-x1y2z3w4\n"
        )
    alice = _maildir(cli, "alice")
    _put(alice, "", "new", "1.M1P1.h,S=100", b"x" * 100)
    _put(alice, "", "cur", "2.M1P1.h,S=2000:2,S", b"y" * 5)  # the name's size counts
    _put(alice, ".Junk", "cur", "3.M1P1.h:2,", b"z" * 300)  # no S=: stat
    _put(alice, ".Trash", "cur", "4.M1P1.h,S=9999:2,", b"t")  # Trash does not count
    (alice / "maildirsize").write_text("1048576S\n999999 77\n")  # wrong
    _put(_maildir(cli, "bob"), "", "new", "5.M1P1.h,S=42", b"b" * 42)

    out = json.loads(cli.ok("quota", "recalc", f"alice@{D}", "--json"))
    assert out == [
        {"address": f"alice@{D}", "used_bytes": 2400, "used_messages": 3, "maildir": "counted"}
    ]
    assert (alice / "maildirsize").read_text() == "1048576S\n2400 3\n"
    assert _usage(cli, f"alice@{D}") == (2400, 3)
    assert _usage(cli, f"bob@{D}") is None  # not asked for

    human = cli.ok("quota", "recalc", "--domain", D)
    assert human.splitlines()[0].split() == ["ADDRESS", "USED", "MESSAGES", "MAILDIR"]
    assert f"carol@{D}" in human and "none yet" in human
    assert _usage(cli, f"bob@{D}") == (42, 1)
    assert _usage(cli, f"carol@{D}") == (0, 0)
    assert not _maildir(cli, "carol").exists()  # counting creates no Maildir
    shown = json.loads(cli.ok("quota", "show", f"bob@{D}", "--json"))
    assert (shown["used_bytes"], shown["used_messages"]) == (42, 1)

    rows = json.loads(cli.ok("quota", "recalc", "--all", "--json"))
    assert [r["address"] for r in rows] == [f"alice@{D}", f"bob@{D}", f"carol@{D}"]

    assert "give one of ADDRESS, --domain DOMAIN or --all" in cli.fails("quota", "recalc")
    assert "give one of" in cli.fails("quota", "recalc", f"alice@{D}", "--all")
    assert "does not exist" in cli.fails("quota", "recalc", f"nobody@{D}")
    assert "does not exist" in cli.fails("quota", "recalc", "--domain", "nope.test")


def test_user_remove_leaves_no_usage_rows(cli: Cli) -> None:
    cli.ok("domain", "add", D)
    cli.ok("user", "add", "--password-stdin", f"alice@{D}", stdin="pw-x1y2z3w4\n")
    _put(_maildir(cli, "alice"), "", "new", "1.M1P1.h,S=100", b"x" * 100)
    cli.ok("quota", "recalc", f"alice@{D}")
    db = Database(cli.url)
    try:
        with db.transaction() as tx:  # what Dovecot's quota_clone writes
            tx.execute(
                "INSERT INTO dovecot_quota (username, bytes, messages) VALUES (?, ?, ?)",
                (f"alice@{D}", 100, 1),
            )
    finally:
        db.close()
    assert _usage(cli, f"alice@{D}") == (100, 1)
    cli.ok("user", "remove", f"alice@{D}")
    assert _rows(cli, "SELECT * FROM quota_usage") == []
    assert _rows(cli, "SELECT * FROM dovecot_quota") == []
    cli.ok("user", "add", "--password-stdin", f"alice@{D}", stdin="pw-x1y2z3w4\n")
    shown = json.loads(cli.ok("quota", "show", f"alice@{D}", "--json"))
    assert shown["used_bytes"] is None  # the new mailbox starts without the old numbers
