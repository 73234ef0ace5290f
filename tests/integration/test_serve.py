"""``mailwarden serve`` supervising the real daemons (policyd, milter, lmtpd, api).

No MTA needed: each test writes a config on a fresh SQLite database with private ports,
starts ``mailwarden serve --foreground`` as a subprocess, and watches its log, its
/metrics endpoint and the children's processes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, pid_alive

pytestmark = pytest.mark.integration
SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = dict(os.environ, PYTHONPATH=SRC)
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Serve:
    def __init__(self, tmp: Path, *, lmtp_listen: str | None = None, only: str = "") -> None:
        self.tmp = tmp
        self.policy_port = free_port()
        self.milter_port = free_port()
        self.metrics_port = free_port()
        self.api_port = free_port()
        self.log = tmp / "serve.log"
        self.config = tmp / "mailwarden.toml"
        lmtp = lmtp_listen or f"unix:{tmp}/lmtp.sock"
        self.config.write_text(
            f'[database]\nurl = "sqlite:///{tmp}/db.sqlite"\n'
            f'[mail]\nroot = "{tmp}/vmail"\n'
            f'[lda]\nlmtp_listen = ["{lmtp}"]\nmetrics_dir = "{tmp}/lda-metrics"\n'
            f'[policy]\nlisten = ["127.0.0.1:{self.policy_port}"]\n'
            f'[milter]\nlisten = ["inet:{self.milter_port}@127.0.0.1"]\nclamd = ""\nspamd = ""\n'
            f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n'
            f'[api]\nlisten = "127.0.0.1:{self.api_port}"\n'
        )
        self.cli("db", "init")
        argv = ["serve", "--foreground", "--backoff", "0.5", "--stop-timeout", "10"]
        if only:
            argv += ["--only", only]
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mailwarden", "--config", str(self.config), *args],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailwarden", "--config", str(self.config), *self.argv],
                env=ENV,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, regex: str, timeout: float = 30.0, count: int = 1) -> list[re.Match[str]]:
        deadline = time.monotonic() + timeout
        while True:
            found = list(re.finditer(regex, self.text(), re.MULTILINE))
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"/{regex}/ x{count} not in serve log:\n{self.text()}")
            time.sleep(0.1)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with OPENER.open(url, timeout=10) as reply:
            return str(reply.read().decode())

    def sample(self, name: str, daemon: str) -> float | None:
        match = re.search(rf'^{name}{{daemon="{daemon}"}} (\S+)$', self.metrics(), re.MULTILINE)
        return float(match.group(1)) if match else None

    def _try_sample(self, name: str, daemon: str) -> float | None:
        try:
            return self.sample(name, daemon)
        except OSError:
            return None

    def wait_sample(self, name: str, daemon: str, value: float, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self._try_sample(name, daemon) != value:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}{{{daemon}}} != {value}:\n{self.text()}")
            time.sleep(0.2)

    def child_pid(self, daemon: str) -> int:
        return int(self.wait_log(rf"serve: {daemon} started \(pid (\d+)\)")[-1].group(1))

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def policy_answers(port: int) -> bool:
    request = (
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=127.0.0.1\n"
        b"sender=a@outside.test\nrecipient=b@nowhere.test\n\n"
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            return sock.recv(4096).startswith(b"action=")
    except OSError:
        return False


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    s = Serve(tmp_path)
    yield s
    s.stop()


def test_serves_all_daemons_and_one_metrics_endpoint(serve: Serve) -> None:
    serve.start()
    for daemon in ("policyd", "milter", "lmtpd", "api"):
        serve.wait_sample("mailwarden_serve_up", daemon, 1.0)
    text = serve.metrics()
    assert "mailwarden_policy_requests_total" in text or "mailwarden_policy_connections" in text
    assert "mailwarden_milter_messages_total" in text
    assert "mailwarden_lda_deliveries_total" in text
    assert policy_answers(serve.policy_port)


def policy_requests(text: str) -> float:
    found = re.findall(r"^mailwarden_policy_requests_total\{[^}]*\} (\S+)$", text, re.M)
    return sum(map(float, found))


def test_killed_child_is_restarted_and_counted(serve: Serve) -> None:
    serve.start()
    serve.wait_sample("mailwarden_serve_up", "policyd", 1.0)
    assert policy_answers(serve.policy_port)
    assert policy_requests(serve.metrics()) == 1.0  # read from policyd's metrics directory
    first = serve.child_pid("policyd")
    os.kill(first, signal.SIGKILL)
    serve.wait_log(r"serve: policyd exited with status -9 after [\d.]+s; restart 1 in 0.5s")
    serve.wait_log(r"serve: policyd started", count=2)
    assert serve.child_pid("policyd") != first
    serve.wait_sample("mailwarden_serve_up", "policyd", 1.0)
    assert serve.sample("mailwarden_serve_restarts_total", "policyd") == 1.0
    assert serve.sample("mailwarden_serve_restarts_total", "lmtpd") == 0.0
    assert policy_answers(serve.policy_port)
    assert policy_requests(serve.metrics()) == 2.0  # the dead policyd's count is kept


def test_sigterm_stops_every_child(serve: Serve) -> None:
    serve.start()
    for daemon in ("policyd", "milter", "lmtpd", "api"):
        serve.wait_sample("mailwarden_serve_up", daemon, 1.0)
    pids = [serve.child_pid(d) for d in ("policyd", "milter", "lmtpd", "api")]
    assert serve.stop() == 0
    assert not [pid for pid in pids if pid_alive(pid)]
    assert "serve: stopped" in serve.text()
    assert "killed" not in serve.text()


def test_crash_loop_backs_off_and_others_keep_serving(tmp_path: Path) -> None:
    # lmtpd cannot create its socket directory below /proc: it exits at every start.
    s = Serve(tmp_path, lmtp_listen="unix:/proc/mailwarden-nope/lmtp.sock", only="policyd,lmtpd")
    try:
        s.start()
        s.wait_log(r"serve: lmtpd exited .*; restart 3 in 2s", timeout=60)
        delays = [float(m.group(1)) for m in re.finditer(r"lmtpd exited .* in ([\d.]+)s", s.text())]
        assert delays[:3] == [0.5, 1.0, 2.0]
        assert s.sample("mailwarden_serve_up", "lmtpd") == 0.0
        assert (s.sample("mailwarden_serve_restarts_total", "lmtpd") or 0) >= 3
        assert s.sample("mailwarden_serve_up", "policyd") == 1.0
        assert s.sample("mailwarden_serve_restarts_total", "policyd") == 0.0
        assert policy_answers(s.policy_port)
    finally:
        assert s.stop() == 0


def test_port_in_use_stops_before_any_daemon_starts(tmp_path: Path) -> None:
    s = Serve(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", s.policy_port))
        busy.listen()
        r = s.cli(*s.argv)
    assert r.returncode == 1
    assert (
        r.stderr.count("\n") == 1 and "port in use" in r.stderr and str(s.policy_port) in r.stderr
    )
    assert "started" not in r.stdout + r.stderr


def test_unknown_daemon_in_only(tmp_path: Path) -> None:
    s = Serve(tmp_path)
    r = s.cli("serve", "--foreground", "--only", "policyd,imapd")
    assert r.returncode == 1
    assert "unknown daemon 'imapd'" in r.stderr


def api_answers(port: int) -> bool:
    try:
        with OPENER.open(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=10) as reply:
            return reply.status == 200 and b'"openapi"' in reply.read()
    except OSError:
        return False


def test_serves_the_api_and_restarts_it(serve: Serve) -> None:
    serve.start()
    serve.wait_sample("mailwarden_serve_up", "api", 1.0)
    assert api_answers(serve.api_port)
    assert 'mailwarden_api_requests_total{method="GET",status="2xx"} 1.0' in serve.metrics()
    first = serve.child_pid("api")
    os.kill(first, signal.SIGKILL)
    serve.wait_log(r"serve: api exited with status -9 after [\d.]+s; restart 1 in 0.5s")
    serve.wait_log(r"serve: api started", count=2)
    assert serve.child_pid("api") != first
    serve.wait_sample("mailwarden_serve_up", "api", 1.0)
    assert api_answers(serve.api_port)
    assert 'mailwarden_api_requests_total{method="GET",status="2xx"} 2.0' in serve.metrics()


def test_api_port_in_use_stops_serve(tmp_path: Path) -> None:
    s = Serve(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", s.api_port))
        busy.listen()
        r = s.cli(*s.argv)
    assert r.returncode == 1
    assert "api: port in use" in r.stderr and str(s.api_port) in r.stderr
