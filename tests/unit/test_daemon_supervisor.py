"""``daemon.supervisor``: restart of a dead worker, drain on SIGTERM, death with the parent.

The parent is a small program on the skeleton (``TOY``): it binds a unix socket with
``daemon.listen`` and runs two workers with ``Supervisor.run``. Each worker answers one
line per connection after ``DELAY`` seconds and, on SIGTERM, stops accepting and lets
the requests in flight finish — the contract every daemon's worker keeps.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden.daemon.supervisor import MAX_BACKOFF, STABLE_SECONDS, exit_text, next_delay

SRC = Path(__file__).resolve().parents[2] / "src"
DELAY = 1.0
TOY = """
import asyncio, os, signal, sys
from mailwarden.daemon import listen, logging as daemon_logging, readiness
from mailwarden.daemon.supervisor import Supervisor, accept_signals

daemon_logging.setup("toy")
address = listen.parse(sys.argv[1])
sock = listen.bind(address)

async def worker() -> int:
    await asyncio.sleep(float(sys.argv[3]))  # a slow start: signals come in meanwhile
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    accept_signals()
    inflight = set()

    async def handle(reader, writer):
        inflight.add(asyncio.current_task())
        await reader.readline()
        await asyncio.sleep(float(sys.argv[2]))
        writer.write(f"done {os.getpid()}\\n".encode())
        await writer.drain()
        writer.close()
        inflight.discard(asyncio.current_task())

    server = await asyncio.start_unix_server(handle, sock=sock)
    await stop.wait()
    server.close()
    if inflight:
        await asyncio.wait(inflight, timeout=10)
    daemon_logging.lifecycle.info("toy: worker %d drained", os.getpid())
    return 0

supervisor = Supervisor(2, lambda i: asyncio.run(worker()), name="toy", initial_backoff=0.2)
readiness.ready("toy", [address])
sys.exit(supervisor.run())
"""


class Toy:
    def __init__(self, tmp_path: Path, start_delay: float = 0.0) -> None:
        self.sock = tmp_path / "toy.sock"
        self.log = tmp_path / "toy.log"
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", TOY, f"unix:{self.sock}", str(DELAY), str(start_delay)],
                stdout=out,
                stderr=out,
                env=env,
            )
        self.wait_log(r"worker (\d+) started", count=2)

    def text(self) -> str:
        return self.log.read_text()

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.findall(pattern, self.text())
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {pattern!r} in:\n{self.text()}")

    def workers(self) -> list[int]:
        started = [int(p) for p in re.findall(r"worker (\d+) started", self.text())]
        exited = {int(p) for p in re.findall(r"worker (\d+) exited", self.text())}
        return [pid for pid in started if pid not in exited]

    def ask(self) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.sock))
            s.sendall(b"hello\n")
            return s.makefile().readline()


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[Toy]:
    t = Toy(tmp_path)
    yield t
    if t.proc.poll() is None:
        t.proc.kill()
        t.proc.wait(5)
    for pid in t.workers():
        _wait_gone(pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_a_killed_worker_is_started_again(toy: Toy) -> None:
    victim = toy.workers()[0]
    os.kill(victim, signal.SIGKILL)
    toy.wait_log(rf"worker {victim} exited \(signal 9\); starting slot \d again in 0.2s")
    toy.wait_log(r"worker (\d+) started", count=3)
    assert len(toy.workers()) == 2 and victim not in toy.workers()
    assert toy.ask().startswith("done ")  # the socket was kept open by the parent


def test_sigterm_drains_the_request_in_flight(toy: Toy) -> None:
    answers: list[str] = []
    client = threading.Thread(target=lambda: answers.append(toy.ask()))
    client.start()
    time.sleep(DELAY / 3)  # the request is with a worker now
    started = time.monotonic()
    toy.proc.send_signal(signal.SIGTERM)
    assert toy.proc.wait(15) == 0
    client.join(5)
    assert answers and answers[0].startswith("done ")  # finished, not cut off
    assert time.monotonic() - started >= DELAY / 3  # the parent waited for it
    assert not any(_alive(pid) for pid in toy.workers())
    assert "Traceback" not in toy.text()


def test_workers_die_with_a_parent_killed_hard(toy: Toy) -> None:
    workers = toy.workers()
    toy.proc.kill()  # SIGKILL: no chance to pass anything on
    toy.proc.wait(5)
    assert all(_wait_gone(pid) for pid in workers)


def test_a_signal_during_a_workers_start_still_drains(tmp_path: Path) -> None:
    toy = Toy(tmp_path, start_delay=1.0)
    workers = toy.workers()
    toy.proc.kill()  # the workers get SIGTERM from the kernel before their handlers exist
    toy.proc.wait(5)
    assert all(_wait_gone(pid) for pid in workers)
    assert sorted(map(int, re.findall(r"worker (\d+) drained", toy.text()))) == sorted(workers)


@pytest.mark.parametrize(
    ("previous", "uptime", "expected"),
    [
        (0.0, 0.1, 1.0),  # the first restart
        (1.0, 0.1, 2.0),  # doubles while it keeps dying
        (32.0, 5.0, MAX_BACKOFF),  # capped
        (MAX_BACKOFF, 1.0, MAX_BACKOFF),
        (8.0, STABLE_SECONDS, 1.0),  # stayed up: from the start again
    ],
)
def test_back_off(previous: float, uptime: float, expected: float) -> None:
    assert next_delay(previous, uptime, 1.0) == expected


def test_exit_text() -> None:
    assert exit_text(9) == "signal 9"  # os.wait's status of a SIGKILL
    assert exit_text(1 << 8) == "exit status 1"
