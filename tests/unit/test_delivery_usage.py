"""lmtpd's write-behind of ``quota_usage`` and the recipient cache of the delivery core."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden.core.delivery import Usage
from mailwarden.delivery.deliver import Deliverer
from mailwarden.delivery.usage import WriteBehindUsage
from mailwarden.store.db import Database
from tests.unit.test_delivery_deliver import MSG, Env


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def _row(db: Database) -> dict[str, object] | None:
    with db.read() as tx:
        return tx.one("SELECT bytes, messages, warned_percent FROM quota_usage")


def _alice(db: Database) -> int:
    with db.read() as tx:
        return int(tx.scalar("SELECT id FROM mailboxes WHERE address = 'alice@example.test'"))


def test_coalesced_until_flush(env: Env) -> None:
    wb = WriteBehindUsage(env.db)
    mid = _alice(env.db)
    for n in range(1, 6):
        assert wb.record(mid, Usage(100 * n, n, 0, 0), (90,)) is None
    assert _row(env.db) is None and wb.pending() == 1
    assert wb.flush() == 1
    assert _row(env.db) == {"bytes": 500, "messages": 5, "warned_percent": 0}
    assert wb.flush() == 0


def test_warning_state_written_at_once_and_only_once(env: Env) -> None:
    wb = WriteBehindUsage(env.db)
    mid = _alice(env.db)
    assert wb.record(mid, Usage(50, 1, 100, 0), (90,)) is None
    assert wb.record(mid, Usage(95, 2, 100, 0), (90,)) == 90
    assert _row(env.db) == {"bytes": 95, "messages": 2, "warned_percent": 90}  # no flush
    assert wb.record(mid, Usage(96, 3, 100, 0), (90,)) is None
    wb.flush()
    assert wb.record(mid, Usage(97, 4, 100, 0), (90,)) is None  # read back from the store
    # A fresh writer (lmtpd restarted) reads the mark: no second warning.
    assert WriteBehindUsage(env.db).record(mid, Usage(98, 5, 100, 0), (90,)) is None
    wb.record(mid, Usage(10, 1, 100, 0), (90,))  # cleaned up: the mark drops at once
    assert _row(env.db) == {"bytes": 10, "messages": 1, "warned_percent": 0}


def test_flush_keeps_admin_warned_reset(env: Env) -> None:
    wb = WriteBehindUsage(env.db)
    mid = _alice(env.db)
    wb.record(mid, Usage(95, 1, 100, 0), (90,))
    with env.db.transaction() as tx:
        tx.execute("UPDATE quota_usage SET warned_percent = 0")
    wb.record(mid, Usage(96, 2, 100, 0), (90,))  # still remembered as warned
    wb.flush()
    assert _row(env.db) == {"bytes": 96, "messages": 2, "warned_percent": 0}
    assert wb.record(mid, Usage(97, 3, 100, 0), (90,)) == 90  # the reset is seen


def test_failed_flush_is_retried_and_deleted_mailbox_dropped(env: Env) -> None:
    wb = WriteBehindUsage(env.db)
    mid = _alice(env.db)
    wb.record(mid, Usage(10, 1, 0, 0), ())
    wb.record(mid + 1000, Usage(10, 1, 0, 0), ())  # no such mailbox: FK violation
    assert wb.flush() == 1
    assert _row(env.db) == {"bytes": 10, "messages": 1, "warned_percent": 0}
    assert wb.pending() == 0


def test_background_thread_and_close(env: Env) -> None:
    wb = WriteBehindUsage(env.db, interval=0.05)
    wb.start()
    mid = _alice(env.db)
    wb.record(mid, Usage(10, 1, 0, 0), ())
    wb.record(mid, Usage(20, 2, 0, 0), ())
    wb.close()
    assert _row(env.db) == {"bytes": 20, "messages": 2, "warned_percent": 0}


def test_deliverer_with_write_behind(env: Env) -> None:
    wb = WriteBehindUsage(env.db)
    lda = Deliverer(env.settings, env.store, env.rec, env.sub, usage=wb)  # type: ignore[arg-type]
    assert lda.deliver("bob@other.test", "alice@example.test", MSG).dsn == "2.0.0"
    assert _row(env.db) is None
    wb.close()
    row = _row(env.db)
    assert row is not None and row["messages"] == 1


def test_recipient_cache_only_active_mailboxes(env: Env) -> None:
    lda = Deliverer(env.settings, env.store, env.rec, env.sub, recipient_ttl=60)  # type: ignore[arg-type]
    assert lda.check_recipient("alice@example.test").ok
    assert not lda.check_recipient("carol@example.test").ok
    env.cli.ok("user", "add", "--password-stdin", "carol@example.test", stdin="pw\n")
    assert lda.check_recipient("carol@example.test").ok  # a miss is never remembered
    with env.db.transaction() as tx:
        tx.execute("UPDATE mailboxes SET active = 0")
    assert lda.deliver("b@x.test", "alice@example.test", MSG).dsn == "2.0.0"  # within TTL
    lda.recipient_ttl = 0.0
    assert lda.deliver("b@x.test", "alice@example.test", MSG).dsn == "5.2.1"


def test_no_vacation_remembered_within_ttl(env: Env, tmp_path: Path) -> None:
    lda = Deliverer(env.settings, env.store, env.rec, env.sub, recipient_ttl=60)  # type: ignore[arg-type]
    assert lda.deliver("bob@other.test", "alice@example.test", MSG).dsn == "2.0.0"
    body = tmp_path / "body.txt"
    body.write_text("Away.\n")
    env.cli.ok("vacation", "set", "alice@example.test", "--subject", "A", "--body-file", str(body))
    assert lda.deliver("bob@other.test", "alice@example.test", MSG).dsn == "2.0.0"
    assert env.sub.sent == []  # switched on within the TTL: not seen yet
    lda.recipient_ttl = 0.0
    assert lda.deliver("bob@other.test", "alice@example.test", MSG).dsn == "2.0.0"
    assert len(env.sub.sent) == 1
