"""policyd --workers: binding before the fork, the option, reload and drain, and the
codec's fast path."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import stat
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mailwarden import config
from mailwarden.daemon.listen import Address
from mailwarden.errors import ConfigError
from mailwarden.policyd import __main__ as policyd_main
from mailwarden.policyd import options as policyd_options
from mailwarden.policyd import workers
from mailwarden.policyd.protocol import MAX_LINE, Decoder, ProtocolError


def test_tcp_one_socket_per_worker_on_one_port() -> None:
    per_worker = workers.bind([Address("tcp", "127.0.0.1", 0)], 3)
    try:
        assert len(per_worker) == 3 and all(len(socks) == 1 for socks in per_worker)
        ports = {socks[0].getsockname()[1] for socks in per_worker}
        assert len(ports) == 1  # port 0: all join the port the first one got
        assert len({id(socks[0]) for socks in per_worker}) == 3
        for socks in per_worker:
            assert socks[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        with socket.create_connection(("127.0.0.1", ports.pop()), timeout=5):
            pass  # listening before any worker runs: the kernel queues the connection
    finally:
        for socks in per_worker:
            socks[0].close()


def test_unix_socket_shared_and_stale_one_replaced(tmp_path: Path) -> None:
    path = tmp_path / "policy.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, as after a crash
    per_worker = workers.bind([Address("unix", str(path)), Address("tcp", "127.0.0.1", 0)], 2)
    try:
        assert per_worker[0][0] is per_worker[1][0]
        assert per_worker[0][1] is not per_worker[1][1]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    finally:
        for sock in {s for socks in per_worker for s in socks}:
            sock.close()


def test_bind_failure_is_a_config_error() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))  # bound without SO_REUSEPORT
    taken.listen()
    try:
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            workers.bind([Address("tcp", "127.0.0.1", taken.getsockname()[1])], 2)
    finally:
        taken.close()


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_workers_option_refuses_nonsense(value: str) -> None:
    parser = argparse.ArgumentParser()
    policyd_options.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--workers", value])
    assert parser.parse_args([]).workers is None  # then [policy] workers (default 1) applies
    assert parser.parse_args(["--workers", "4"]).workers == 4


def test_codec_counts_bytes_not_characters() -> None:
    """MAX_LINE is in bytes: a line of few characters but many UTF-8 bytes is too long."""
    chars = "é" * (MAX_LINE // 2 + 1)  # 2 bytes each
    data = f"request=smtpd_access_policy\nsender={chars}\n\n".encode()
    with pytest.raises(ProtocolError, match="line longer"):
        Decoder().feed(data)
    ok = f"request=smtpd_access_policy\nsender={'é' * 100}\n\n".encode()
    (req,) = Decoder().feed(ok)
    assert req.sender == "é" * 100


def test_codec_cr_and_lf_in_separate_reads() -> None:
    d = Decoder()
    assert d.feed(b"request=smtpd_access_policy\r") == []
    assert d.feed(b"\nrecipient=a@b.test\r\n\r") == []
    (req,) = d.feed(b"\n")
    assert req.recipient == "a@b.test" and not d.pending


def test_codec_bad_line_after_a_good_request_in_the_same_read() -> None:
    good = b"request=smtpd_access_policy\nrecipient=a@b.test\n\n"
    with pytest.raises(ProtocolError):
        Decoder().feed(good + b"request=smtpd_access_policy\nbroken\n\n")


def _settings(path: Path, checks: str, ttl: float) -> config.Settings:
    path.write_text(
        f'[database]\nurl = "sqlite:///{path.parent}/db.sqlite"\n'
        f'[mail]\nroot = "{path.parent}"\n'
        f"[policy]\nchecks = [{checks}]\ncache_ttl = {ttl}\n"
    )
    return config.load(str(path))


def test_sighup_reload_applies_checks_and_cache_ttl(tmp_path: Path) -> None:
    path = tmp_path / "mailwarden.toml"
    server = policyd_main.build(_settings(path, '"relay", "recipient"', 5.0), CollectorRegistry())
    _settings(path, '"relay"', 1.5)
    policyd_main.reload(server, str(path))
    assert server.engine.checks == frozenset({"relay"})
    assert server.engine.cache.ttl == 1.5
    path.write_text("[policy]\nchecks = 3\n")
    with pytest.raises(ConfigError):  # readiness.on_reload logs it; the old settings stay
        policyd_main.reload(server, str(path))
    assert server.engine.checks == frozenset({"relay"})


def test_drain_lets_the_store_lookup_in_flight_finish(tmp_path: Path) -> None:
    server = policyd_main.build(_settings(tmp_path / "m.toml", '"relay"', 5.0), CollectorRegistry())

    async def go() -> bool:
        loop = asyncio.get_running_loop()
        lookup = loop.run_in_executor(server.executor, time.sleep, 0.3)
        await policyd_main.drain(server, seconds=5)
        return lookup.done() and not lookup.cancelled()

    assert asyncio.run(go())
