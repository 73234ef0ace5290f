"""policyd as a daemon under bad input: none of it crashes it, and it keeps answering.

Runs the real daemon (subprocess) on SQLite; see test_policy_mta.py for the MTAs. Also
``--workers 2``: both workers answer (TCP and unix), the metrics add up, a killed worker
is replaced, SIGTERM stops them all, and Postfix's transactions keep their state.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, write_config
from tests.daemons import Daemon, start_daemon
from tests.integration.test_policy_mta import (
    Policyd,
    postfix_settings,
    rcpt,
    seed,
    smtp,
    start_policyd,
)
from tests.servers import free_port

pytestmark = pytest.mark.integration

GOOD = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=alice@example.test\n"
    b"client_address=192.0.2.1\n\n"
)


@pytest.fixture(scope="module")
def daemon(workdir: Path) -> Iterator[Policyd]:
    base = workdir / "policyd-bad"
    base.mkdir()
    cli, d = start_policyd(base, f"sqlite:///{base}/db.sqlite")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", "alice@example.test", "--password-stdin", stdin="pw")
    yield d
    d.stop()


def talk(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def alive(d: Policyd) -> None:
    assert d.alive
    assert talk(d.port, GOOD) == b"action=DUNNO\n\n"


@pytest.mark.parametrize(
    "payload",
    [
        b"protocol_state=RCPT\nrecipient=a@b.test\n\n",  # missing request=
        b"request=something_else\n\n",
        b"request=smtpd_access_policy\n" + b"x" * 100_000 + b"\n\n",  # huge line
        b"request=smtpd_access_policy\nsender=\xff\xfe@x.test\n\n",  # not UTF-8
        b"request=smtpd_access_policy\n" + b"".join(b"a%d=1\n" % i for i in range(5000)) + b"\n",
        b"request=smtpd_access_policy\nno equals sign\n\n",
        b"request=smtpd_access_policy\nsender=a\x00b\n\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 50,  # a TLS hello
    ],
    ids=[
        "no-request",
        "bad-request",
        "huge-line",
        "non-utf8",
        "5000-attrs",
        "no-equals",
        "nul",
        "tls",
    ],
)
def test_malformed_gets_no_reply(daemon: Policyd, payload: bytes) -> None:
    assert talk(daemon.port, payload) == b""
    alive(daemon)


def test_unknown_attributes_ignored(daemon: Policyd) -> None:
    extra = GOOD.replace(b"\n\n", b"\nfuture_attribute=1\ntls_sni=x\n\n")
    assert talk(daemon.port, extra) == b"action=DUNNO\n\n"


def test_pipelined_requests_on_one_connection(daemon: Policyd) -> None:
    assert talk(daemon.port, GOOD * 50) == b"action=DUNNO\n\n" * 50


def test_stalled_half_request_is_closed(daemon: Policyd) -> None:
    # request_timeout is 5 s in the test config
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=15) as s:
        s.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\n")
        started = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - started < 12
    alive(daemon)


def test_connection_flood(daemon: Policyd) -> None:
    socks = []
    try:
        for _ in range(300):
            socks.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=5))
        for s in socks[:150]:
            s.sendall(GOOD)
        for s in socks[:150]:
            assert s.recv(100) == b"action=DUNNO\n\n"
    finally:
        for s in socks:
            s.close()
    for _ in range(200):  # open and drop at once
        socket.create_connection(("127.0.0.1", daemon.port), timeout=5).close()
    alive(daemon)


# -- --workers N: several processes on one address -------------------------------------


def children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return {int(p) for p in out.stdout.split()}


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.05)


def unix_talk(path: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(data)
        return s.recv(100)


@pytest.fixture(scope="module")
def pool(workdir: Path) -> Iterator[tuple[Daemon, int, str, int]]:
    base = workdir / "policyd-workers"
    base.mkdir()
    url = f"sqlite:///{base}/db.sqlite"
    (base / "vmail").mkdir()
    # two workers from the configuration ([policy] workers), as serve and systemd run it
    config = write_config(base / "policyd.toml", url, base / "vmail", "[policy]\nworkers = 2\n")
    cli = Cli(config, url)
    cli.ok("db", "init")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", "alice@example.test", "--password-stdin", stdin="pw")
    port, metrics_port, sock = free_port(), free_port(), str(base / "policy.sock")
    args = ["--listen", f"unix:{sock}", "--metrics", f"127.0.0.1:{metrics_port}"]
    daemon = start_daemon("policyd", config, f"127.0.0.1:{port}", base / "workers.log", args=args)
    wait_for(lambda: len(children(daemon.pid)) == 2)
    yield daemon, port, sock, metrics_port
    daemon.stop()


def test_workers_answer_on_tcp_and_unix_and_share_metrics(
    pool: tuple[Daemon, int, str, int],
) -> None:
    daemon, port, sock, metrics_port = pool
    conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(16)]
    try:
        for s in conns:
            s.sendall(GOOD)
        assert [s.recv(100) for s in conns] == [b"action=DUNNO\n\n"] * 16
    finally:
        for s in conns:
            s.close()
    assert unix_talk(sock, GOOD) == b"action=DUNNO\n\n"
    pids = set(re.findall(r"policyd\[(\d+)\]: state=RCPT", daemon.log_path.read_text()))
    assert len(pids) == 2  # SO_REUSEPORT spread 16 connections over both workers
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    match = re.search(
        r'^mailwarden_policy_requests_total\{check="all",result="dunno"\} (\S+)', text, re.M
    )
    assert match is not None and float(match.group(1)) >= 17  # both workers' counts


def test_a_dead_worker_is_replaced(pool: tuple[Daemon, int, str, int]) -> None:
    daemon, port, _, _ = pool
    before = children(daemon.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(children(daemon.pid)) == 2 and victim not in children(daemon.pid))
    assert "exited (signal 9); starting slot" in daemon.log_path.read_text()
    for _ in range(10):  # every connection is answered, whichever worker takes it
        assert talk(port, GOOD) == b"action=DUNNO\n\n"
    assert daemon.alive


def test_sigterm_stops_parent_and_workers(
    workdir: Path, pool: tuple[Daemon, int, str, int]
) -> None:
    daemon, port, _, _ = pool
    workers = children(daemon.pid)
    assert daemon.stop(10) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert "policyd: stopped" in daemon.log_tail()


def test_workers_exit_when_the_parent_is_killed(workdir: Path) -> None:
    base = workdir / "policyd-orphans"
    base.mkdir()
    url = f"sqlite:///{base}/db.sqlite"
    (base / "vmail").mkdir()
    config = write_config(base / "policyd.toml", url, base / "vmail")
    Cli(config, url).ok("db", "init")
    port = free_port()
    args = ["--metrics", "none", "--workers", "2"]
    daemon = start_daemon("policyd", config, f"127.0.0.1:{port}", base / "p.log", args=args)
    try:
        wait_for(lambda: len(children(daemon.pid)) == 2)
        workers = children(daemon.pid)
        os.kill(daemon.pid, signal.SIGKILL)  # no chance to pass SIGTERM on
        daemon.proc.wait(5)
        wait_for(lambda: all(not Path(f"/proc/{pid}").exists() for pid in workers))
    finally:
        daemon.stop(5)


@pytest.fixture(scope="module")
def postfix_pool(workdir: Path) -> Iterator[object]:
    """Postfix (contrib/postfix/main.cf.policy) in front of ``policyd --workers 2``."""
    from tests.servers import Postfix, make_workdir

    base = make_workdir("mw-policy-workers-")
    url = f"sqlite:///{base}/db.sqlite"
    (base / "vmail").mkdir()
    extra = "[policy]\ncache_ttl = 1.0\nmax_recipients = 5\n"
    config = write_config(base / "policyd.toml", url, base / "vmail", extra)
    cli = Cli(config, url)
    cli.ok("db", "init")
    seed(cli)
    port = free_port()
    daemon = start_daemon(
        "policyd",
        config,
        f"127.0.0.1:{port}",
        base / "policyd.log",
        args=["--metrics", "none", "--workers", "2"],
    )
    postfix = Postfix(base, main_cf_extra=postfix_settings(port))
    postfix.start()
    yield postfix
    postfix.stop()
    daemon.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_postfix_transactions_stay_with_their_worker(postfix_pool: object) -> None:
    """Each smtpd's transaction lives in the worker that holds its connection.

    Six SMTP sessions at once (Postfix opens a policy connection per smtpd process, which
    SO_REUSEPORT hashes onto one of the two workers), each with six RCPTs: in every session the
    sixth is refused by the per-transaction recipient limit (max_recipients = 5), so no
    worker lost count and no session saw another's recipients.
    """
    clients = [smtp(postfix_pool) for _ in range(6)]
    try:
        for s in clients:
            code, msg = s.docmd("MAIL FROM:<s@outside.test>")
            assert code == 250, msg
        codes: list[list[int]] = [[] for _ in clients]
        for i in range(6):
            for n, s in enumerate(clients):
                codes[n].append(rcpt(s, f"r{i}@example.test")[0])
        assert codes == [[250] * 5 + [452]] * 6
        code, msg = rcpt(clients[0], "victim@else.test")
        assert code >= 500 and "Relay access denied" in msg, msg
    finally:
        for s in clients:
            s.close()
