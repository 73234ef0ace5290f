"""policyd --workers: binding before the fork, the option, and the codec's fast path."""

from __future__ import annotations

import argparse
import os
import socket
import stat
from pathlib import Path

import pytest

from mailwarden.errors import ConfigError
from mailwarden.policyd import __main__ as policyd_main
from mailwarden.policyd import workers
from mailwarden.policyd.protocol import MAX_LINE, Decoder, ProtocolError


def test_tcp_one_socket_per_worker_on_one_port() -> None:
    per_worker = workers.bind([("tcp", "127.0.0.1", 0)], 3)
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
    per_worker = workers.bind([("unix", str(path), 0), ("tcp", "127.0.0.1", 0)], 2)
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
            workers.bind([("tcp", "127.0.0.1", taken.getsockname()[1])], 2)
    finally:
        taken.close()


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_workers_option_refuses_nonsense(value: str) -> None:
    parser = argparse.ArgumentParser()
    policyd_main.add_arguments(parser)
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
