"""``store.ratelimit.refund`` on both dialects: what the milter takes back out of
policyd's counters never goes below zero and never touches another window or key."""

from __future__ import annotations

from mailwarden.store import ratelimit as rate_store
from mailwarden.store.db import Database
from tests.conftest import Cli


def counters(db: Database) -> dict[tuple[str, str, int], tuple[int, int]]:
    with db.read() as tx:
        rows = tx.all(
            "SELECT counter_key, period, window_start, messages, recipients FROM rate_counters"
        )
    return {
        (str(r["counter_key"]), str(r["period"]), int(r["window_start"])): (
            int(r["messages"]),
            int(r["recipients"]),
        )
        for r in rows
    }


def test_refund_takes_back_one_message_and_clamps_at_zero(cli: Cli) -> None:
    db = Database(cli.url)
    try:
        with db.transaction() as tx:
            rate_store.add_usage(tx, "login:a@example.test", "hour", 3600, 3, 7)
            rate_store.add_usage(tx, "login:a@example.test", "hour", 0, 2, 2)  # older window
            rate_store.add_usage(tx, "client:192.0.2.1", "hour", 3600, 1, 1)
        with db.transaction() as tx:
            rate_store.refund(tx, "login:a@example.test", "hour", 3600, 1, 5)
        assert counters(db)[("login:a@example.test", "hour", 3600)] == (2, 2)
        with db.transaction() as tx:
            rate_store.refund(tx, "login:a@example.test", "hour", 3600, 1, 5)
            rate_store.refund(tx, "login:a@example.test", "hour", 3600, 1, 5)
            rate_store.refund(tx, "login:nobody@example.test", "hour", 3600, 1, 1)  # no row
        after = counters(db)
        assert after[("login:a@example.test", "hour", 3600)] == (0, 0)
        assert after[("login:a@example.test", "hour", 0)] == (2, 2)
        assert after[("client:192.0.2.1", "hour", 3600)] == (1, 1)
        assert len(after) == 3
    finally:
        db.close()
