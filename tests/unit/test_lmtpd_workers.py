"""``mailwarden lmtpd --workers N``: the pre-fork model and ``quota_usage`` across workers."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mailwarden.core.delivery import Usage
from mailwarden.delivery import quota
from mailwarden.delivery.maildir import open_maildir
from mailwarden.delivery.usage import FreshUsage
from mailwarden.lmtpd.workers import SharedUsage
from mailwarden.store import delivery as store
from mailwarden.store.db import Database
from tests.daemons import start_daemon
from tests.unit.test_delivery_deliver import MSG, Env


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def _alice(env: Env) -> store.Recipient:
    with env.db.read() as tx:
        rcpt = store.find_recipient(tx, "alice@example.test")
    assert rcpt is not None
    return rcpt


def _row(db: Database) -> dict[str, object] | None:
    with db.read() as tx:
        return tx.one("SELECT bytes, messages, warned_percent FROM quota_usage")


def _maildirsize(env: Env) -> tuple[int, int]:
    path = str(env.root / "example.test" / "alice")
    with open_maildir(str(env.root), path, None) as box:
        sf = quota.read(box)
    assert sf is not None
    return sf.bytes, sf.messages


def _writer(env: Env, tmp_path: Path) -> SharedUsage:
    rcpt = _alice(env)
    return SharedUsage(env.db, str(tmp_path / "usage.lock"), str(env.root), lambda: {rcpt.id: rcpt})


def test_older_numbers_never_written_over_newer(env: Env, tmp_path: Path) -> None:
    first, second = _writer(env, tmp_path), _writer(env, tmp_path)  # two worker processes
    mid = _alice(env).id
    for _ in range(3):
        assert env.deliver() == "2.0.0"
    now = _maildirsize(env)
    first.record(mid, Usage(now[0] - 100, now[1] - 1, 0, 0), (90,))  # decided earlier
    second.record(mid, Usage(*now, 0, 0), (90,))
    second.flush()
    first.flush()  # late: writes what maildirsize says now, not its older numbers
    assert _row(env.db) == {"bytes": now[0], "messages": now[1], "warned_percent": 0}


def test_one_process_writes_maildirsize_not_the_last_recorded_numbers(env: Env) -> None:
    """Two deliveries to one mailbox finishing out of order in lmtpd's threads: the row
    written follows maildirsize, not whichever thread called ``record`` last."""
    rcpt = _alice(env)
    usage = FreshUsage(env.db, str(env.root), lambda: {rcpt.id: rcpt})
    for _ in range(2):
        assert env.deliver() == "2.0.0"
    now = _maildirsize(env)
    usage.record(rcpt.id, Usage(*now, 0, 0), (90,))  # the later delivery's thread
    usage.record(rcpt.id, Usage(now[0] - 100, now[1] - 1, 0, 0), (90,))  # the earlier one
    usage.flush()
    assert _row(env.db) == {"bytes": now[0], "messages": now[1], "warned_percent": 0}
    # without a readable Maildir (mailbox not remembered) the recorded numbers are kept
    gone = FreshUsage(env.db, str(env.root), dict)
    gone.record(rcpt.id, Usage(5, 1, 0, 0), (90,))
    gone.flush()
    assert _row(env.db) == {"bytes": 5, "messages": 1, "warned_percent": 0}


def test_a_warning_is_sent_by_one_worker_only(env: Env, tmp_path: Path) -> None:
    first, second = _writer(env, tmp_path), _writer(env, tmp_path)
    mid = _alice(env).id
    assert first.record(mid, Usage(50, 1, 100, 0), (90,)) is None
    assert second.record(mid, Usage(60, 2, 100, 0), (90,)) is None
    assert first.record(mid, Usage(95, 3, 100, 0), (90,)) == 90
    assert second.record(mid, Usage(96, 4, 100, 0), (90,)) is None  # its cache said 0
    assert _row(env.db) == {"bytes": 95, "messages": 3, "warned_percent": 90}
    assert second.record(mid, Usage(10, 1, 100, 0), (90,)) is None  # cleaned up: mark drops
    assert _row(env.db) == {"bytes": 10, "messages": 1, "warned_percent": 0}


def _send(sock: Path, count: int, errors: list[BaseException]) -> None:
    try:
        client = smtplib.LMTP(str(sock))
        for _ in range(count):
            refused = client.sendmail("bob@other.test", ["alice@example.test"], MSG)
            assert not refused
        client.quit()
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def _deliveries(log: Path) -> dict[str, int]:
    pids: dict[str, int] = {}
    for m in re.finditer(
        r"lmtpd\[(\d+)\]: deliver rcpt=<alice@example.test>.*dsn=2\.0\.0", log.read_text()
    ):
        pids[m.group(1)] = pids.get(m.group(1), 0) + 1
    return pids


def test_workers_share_the_socket_and_stop_cleanly(env: Env, tmp_path: Path) -> None:
    sock = tmp_path / "run" / "lmtp.sock"
    log = tmp_path / "lmtpd.log"
    daemon = start_daemon(
        "lmtpd", env.cfg, f"unix:{sock}", log, args=["--workers", "2", "--metrics", "none"]
    )
    try:
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_send, args=(sock, 10, errors)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert len(env.new()) == 40  # each message exactly once
        pids = _deliveries(log)
        assert len(pids) == 2 and sum(pids.values()) == 40  # round robin: both served
        # A worker that dies is replaced; the service goes on.
        os.kill(int(next(iter(pids))), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while log.read_text().count("started") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert re.search(r"worker \d+ exited \(signal 9\)", log.read_text())
        _send(sock, 2, errors)
        _send(sock, 2, errors)
        assert not errors and len(env.new()) == 44
    finally:
        assert daemon.stop(30) == 0
    assert not sock.exists()
    text = log.read_text()
    assert "Traceback" not in text
    assert text.count("lmtpd stopped") == 2  # both workers drained
    bytes_, messages = _maildirsize(env)
    assert _row(env.db) == {"bytes": bytes_, "messages": messages, "warned_percent": 0}


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # an orphan's zombie waits for a reaper we do not control


def test_workers_stop_when_the_parent_dies(env: Env, tmp_path: Path) -> None:
    sock = tmp_path / "lmtp.sock"
    log = tmp_path / "lmtpd.log"
    # the number of workers from the configuration ([lda] lmtp_workers), as serve runs it
    env.cfg.write_text(env.cfg.read_text().replace("[lda]\n", "[lda]\nlmtp_workers = 2\n"))
    daemon = start_daemon("lmtpd", env.cfg, f"unix:{sock}", log, args=["--metrics", "none"])
    deadline = time.monotonic() + 20
    while log.read_text().count("started") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [int(p) for p in re.findall(r"worker (\d+) started", log.read_text())]
    assert len(workers) == 2
    daemon.proc.kill()  # no SIGTERM for the workers: they see their socket pair close
    daemon.proc.wait(5)
    deadline = time.monotonic() + 20
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_running, workers))
    assert log.read_text().count("lmtpd stopped") == 2


def test_record_and_flush_in_threads_do_not_deadlock(env: Env, tmp_path: Path) -> None:
    rcpt = _alice(env)
    mid = rcpt.id

    def slow_locate() -> dict[int, store.Recipient]:
        time.sleep(0.001)  # widen the window in which the flusher holds its locks
        return {mid: rcpt}

    writer = SharedUsage(env.db, str(tmp_path / "usage.lock"), str(env.root), slow_locate)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            writer.flush()  # forgets warned_percent: the next record takes the slow path

    def recorder() -> None:
        for n in range(300):
            writer.record(mid, Usage(n, n, 0, 0), (90,))

    threads = [
        threading.Thread(target=flusher),
        *(threading.Thread(target=recorder) for _ in range(3)),
    ]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(30)
    stop.set()
    threads[0].join(30)
    assert not any(t.is_alive() for t in threads)


def test_workers_and_pipe_deliveries_in_one_scrape(env: Env, tmp_path: Path) -> None:
    """``--workers 2 --metrics``: every worker counts into the skeleton's multi-process
    directory, the pipe LDA's counter file is folded in, and the parent serves the sum
    under the same metric names as one lmtpd."""
    from mailwarden.delivery.counters import FileRecorder
    from tests import servers

    sock = tmp_path / "lmtp.sock"
    port = servers.free_port()
    daemon = start_daemon(
        "lmtpd",
        env.cfg,
        f"unix:{sock}",
        tmp_path / "lmtpd.log",
        args=["--workers", "2", "--metrics", f"127.0.0.1:{port}"],
    )
    try:
        errors: list[BaseException] = []
        for _ in range(3):
            _send(sock, 2, errors)  # a connection each: round robin over both workers
        assert not errors
        FileRecorder(str(tmp_path)).record("delivered", 10, 0.01)  # one pipe delivery
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        assert daemon.stop(30) == 0
    assert 'mailwarden_lda_deliveries_total{outcome="delivered"} 7.0' in text
    assert re.search(r"^mailwarden_lda_delivery_seconds_count 7\.0$", text, re.M)
    assert 'mailwarden_lda_deliveries_total{outcome="quota"} 0.0' in text  # pre-set labels
    assert len(_deliveries(tmp_path / "lmtpd.log")) == 2
