"""``daemon.metrics``, ``daemon.readiness``, ``daemon.logging``: the rest of the skeleton."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from mailwarden.daemon import logging as daemon_logging
from mailwarden.daemon import readiness
from mailwarden.daemon.listen import ListenError
from mailwarden.daemon.metrics import MultiProcess, host_port, serve_http
from mailwarden.errors import ConfigError


def _count_in_child(shared: MultiProcess, n: int, family: str = "test") -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        shared.in_worker()
        registry = CollectorRegistry()
        c = Counter(f"mailwarden_{family}_things_total", "things", ["kind"], registry=registry)
        g = Gauge(
            f"mailwarden_{family}_open", "open", registry=registry, multiprocess_mode="livesum"
        )
        c.labels("a").inc(n)
        g.inc()
        code = 0
    finally:
        os._exit(code)


def test_two_processes_counters_in_one_scrape() -> None:
    shared = MultiProcess("test")
    try:
        pids = [_count_in_child(shared, 2), _count_in_child(shared, 3)]
        for pid in pids:
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        text = generate_latest(shared.registry()).decode()
        assert 'mailwarden_test_things_total{kind="a"} 5.0' in text
        assert "mailwarden_test_open 2.0" in text  # live until marked dead
        for pid in pids:
            shared.mark_dead(pid)
        assert "mailwarden_test_open 2.0" not in generate_latest(shared.registry()).decode()
    finally:
        shared.close()
    assert not os.path.exists(shared.directory)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9190", ("127.0.0.1", 9190)),
        (":9190", ("127.0.0.1", 9190)),
        ("[::1]:1", ("::1", 1)),
    ],
)
def test_metrics_host_port(text: str, expected: tuple[str, int]) -> None:
    assert host_port(text) == expected


def test_metrics_address_taken_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"metrics address 127.0.0.1:{port}"):
            serve_http(f"127.0.0.1:{port}", CollectorRegistry())
    with pytest.raises(ListenError, match="expected HOST:PORT"):
        host_port("unix:/x")


def test_ready_notifies_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sd:
        sd.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        readiness.ready("toy", ["unix:/x"])
        assert sd.recv(100).decode() == f"READY=1\nMAINPID={os.getpid()}"
        readiness.stopping()
        assert sd.recv(100) == b"STOPPING=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert readiness.notify("READY=1") is False  # not under systemd: nothing sent


def test_log_format_is_postfix_like(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        daemon_logging.setup("toy", "warning")
        log = logging.getLogger("mailwarden.toy")
        log.info("decision")  # below the level
        log.warning("odd")
        daemon_logging.lifecycle.info("toy: listening on unix:/x")  # shows at every level
        err = capsys.readouterr().err
        assert "decision" not in err
        assert f"mailwarden-toy[{os.getpid()}]: warning: odd\n" in err
        assert f"mailwarden-toy[{os.getpid()}]: toy: listening on unix:/x\n" in err
        with pytest.raises(ConfigError, match="log level 'loud'"):
            daemon_logging.set_level("loud")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_serve_reads_each_daemons_directory(tmp_path: Path) -> None:
    """``serve``'s endpoint: one collector per daemon directory beside its own metrics."""
    from mailwarden.daemon.metrics import collect_dirs

    dirs = []
    for name, n in (("policyd", 2), ("lmtpd", 3)):
        directory = tmp_path / name
        directory.mkdir()
        dirs.append(str(directory))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        try:
            shared = MultiProcess(name)  # under serve: reuses the directory it was given
            assert shared.directory == str(directory) and not shared.owned
            pid = _count_in_child(shared, n, family=name)
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
            shared.close()  # not its own: left for serve
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        assert directory.exists()
    registry = CollectorRegistry()
    Counter("mailwarden_serve_restarts", "restarts", registry=registry)
    text = generate_latest(collect_dirs(registry, dirs)).decode()
    assert 'mailwarden_policyd_things_total{kind="a"} 2.0' in text
    assert 'mailwarden_lmtpd_things_total{kind="a"} 3.0' in text
    assert "mailwarden_serve_restarts_total 0.0" in text
