"""The milter's batched traffic accounting (milter.traffic.TrafficRecorder) on a real SQLite store.

End of message only queues; the recorder's own thread writes the queue in one
transaction per interval; ``close`` writes what is left. The end-to-end path (libmilter,
a real message, ``mailwarden traffic``) is test_milter_protocol.test_traffic_is_counted.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mailwarden.metrics import MilterMetrics
from mailwarden.milter.traffic import TrafficRecorder
from mailwarden.store import traffic
from mailwarden.store.db import Database
from tests.conftest import run_bin, write_config

pytestmark = pytest.mark.integration
DAY = "2026-01-02"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path}/traffic.sqlite"
    cfg = write_config(tmp_path / "cfg.toml", url, tmp_path / "vmail")
    for args in (("db", "init"), ("domain", "add", "example.test")):
        r = run_bin("--config", str(cfg), *args)
        assert r.returncode == 0, r.stderr
    return Database(url)


def rows(db: Database) -> dict[str, dict[str, int]]:
    with db.read() as tx:
        return {r["domain"]: r for r in traffic.report(tx, DAY)}


def test_queued_messages_are_summed_and_written_at_close(db: Database) -> None:
    metrics = MilterMetrics.create(CollectorRegistry())
    rec = TrafficRecorder(db, metrics, today=lambda: DAY, interval=3600)
    for _ in range(5):
        rcpts = ["<a@example.test>", "<B@Example.Test>", "<x@far.test>"]
        rec.add(rcpts, "<s@out.test>", False, 100)
    rec.add(["<x@far.test>"], "<alice@example.test>", True, 50)
    rec.add(["<x@far.test>"], "<alice@example.test>", False, 70)  # not authenticated: no "out"
    assert rows(db)["example.test"]["messages_in"] == 0  # nothing before the interval
    rec.close()
    row = rows(db)["example.test"]
    assert (row["messages_in"], row["bytes_in"]) == (5, 500)
    assert (row["messages_out"], row["bytes_out"]) == (1, 50)
    assert metrics.traffic_messages.labels("in")._value.get() == 5
    assert metrics.traffic_bytes.labels("out")._value.get() == 50
    rec.add(["<a@example.test>"], "", False, 1)  # after close: dropped, no thread
    assert rows(db)["example.test"]["messages_in"] == 5


def test_the_writer_thread_writes_every_interval(db: Database) -> None:
    rec = TrafficRecorder(db, MilterMetrics.create(CollectorRegistry()), lambda: DAY, 0.05)
    try:
        rec.add(["<a@example.test>"], "", False, 10)
        deadline = time.monotonic() + 5
        while not rows(db)["example.test"]["messages_in"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert rows(db)["example.test"]["messages_in"] == 1
    finally:
        rec.close()
