"""doctor's "lmtpd reachable by the MTA only": who could connect to a unix socket."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from mailwarden.config import from_dict
from mailwarden.doctor.checks import Failed, Options, Probe, check_lmtp_socket, others_can_connect


def _socket(path: Path, mode: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    os.chmod(path, mode)
    return sock


def test_others_can_connect_follows_socket_and_directories() -> None:
    top = Path(tempfile.mkdtemp(prefix="mw-doctor-sock-", dir="/tmp"))  # /tmp: 1777
    try:
        os.chmod(top, 0o755)
        d = top / "mailwarden-lmtpd"
        d.mkdir(mode=0o755)
        path = d / "lmtp.sock"
        with _socket(path, 0o666):
            assert others_can_connect(str(path))
            os.chmod(d, 0o750)
            assert not others_can_connect(str(path))
            os.chmod(d, 0o755)
            os.chmod(path, 0o660)
            assert not others_can_connect(str(path))
    finally:
        shutil.rmtree(top)


def _probe(listen: list[str]) -> Probe:
    settings = from_dict({"lda": {"lmtp_listen": listen}})
    return Probe(settings, Options())


def test_lmtpd_on_tcp_fails_the_check() -> None:
    with pytest.raises(Failed, match="on TCP any local process can deliver"):
        check_lmtp_socket(_probe(["127.0.0.1:10024"]))


def test_missing_socket_fails_the_check(tmp_path: Path) -> None:
    with pytest.raises(Failed, match="does not exist"):
        check_lmtp_socket(_probe([f"unix:{tmp_path}/none.sock"]))
