"""``daemon.listen``: the one listen-address parser (a table), its conversions, and bind."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from mailwarden.daemon.listen import Address, ListenError, bind, clear_stale, parse
from mailwarden.errors import ConfigError

PRIVATE = "/var/spool/postfix/private/mailwarden-milter"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/mailwarden/policy.sock", Address("unix", "/run/mailwarden/policy.sock")),
        (f"unix:{PRIVATE}", Address("unix", PRIVATE)),
        (f"local:{PRIVATE}", Address("unix", PRIVATE)),  # libmilter's other spelling
        ("127.0.0.1:10040", Address("tcp", "127.0.0.1", 10040)),
        ("localhost:24", Address("tcp", "localhost", 24)),
        ("  127.0.0.1:10040 ", Address("tcp", "127.0.0.1", 10040)),
        ("[::1]:10040", Address("tcp", "::1", 10040)),
        ("inet:127.0.0.1:10040", Address("tcp", "127.0.0.1", 10040)),  # Postfix's
        ("inet:[::1]:24", Address("tcp", "::1", 24)),
        ("inet:8894@127.0.0.1", Address("tcp", "127.0.0.1", 8894)),  # libmilter's
        ("inet6:8894@::1", Address("tcp", "::1", 8894)),
        ("inet6:8894@[::1]", Address("tcp", "::1", 8894)),
        ("inet:8894", Address("tcp", "0.0.0.0", 8894)),  # noqa: S104 - libmilter: any
        ("inet:65535@localhost", Address("tcp", "localhost", 65535)),
    ],
)
def test_good_addresses(text: str, expected: Address) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected unix:/path"),
        ("10040", "expected unix:/path"),
        ("127.0.0.1", "expected unix:/path"),
        (":10040", "expected unix:/path"),
        ("127.0.0.1:0", "port must be 1..65535"),
        ("127.0.0.1:65536", "port must be 1..65535"),
        ("127.0.0.1:http", "port must be 1..65535"),
        ("::1:10040", "write an IPv6 address as"),
        ("unix:relative.sock", "must be absolute"),
        ("unix:", "must be absolute"),
        ("local:private/milter", "must be absolute"),
        ("/run/lmtp.sock", "write unix:/run/lmtp.sock"),  # lmtpd's old bare path
        ("inet:0@127.0.0.1", "port must be 1..65535"),
        ("inet:99999@127.0.0.1", "port must be 1..65535"),
        ("inet:x@h", "port must be"),
        ("tcp://127.0.0.1:25", "expected unix:/path"),
        ("host name:25", "expected unix:/path"),
    ],
)
def test_bad_addresses_are_one_line_config_errors(text: str, message: str) -> None:
    with pytest.raises(ListenError, match=message) as info:
        parse(text)
    assert isinstance(info.value, ConfigError)
    assert "\n" not in str(info.value) and repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "canonical", "libmilter", "postfix"),
    [
        ("unix:/q/private/m", "unix:/q/private/m", "unix:/q/private/m", "unix:private/m"),
        ("unix:/run/m.sock", "unix:/run/m.sock", "unix:/run/m.sock", "unix:/run/m.sock"),
        ("127.0.0.1:8894", "127.0.0.1:8894", "inet:8894@127.0.0.1", "inet:127.0.0.1:8894"),
        ("inet:8894@127.0.0.1", "127.0.0.1:8894", "inet:8894@127.0.0.1", "inet:127.0.0.1:8894"),
        ("[::1]:8894", "[::1]:8894", "inet6:8894@::1", "inet:[::1]:8894"),
    ],
)
def test_conversions(text: str, canonical: str, libmilter: str, postfix: str) -> None:
    address = parse(text)
    assert str(address) == canonical
    assert address.libmilter == libmilter
    assert address.postfix(queue_dir="/q") == postfix
    assert parse(str(address)) == address  # the canonical form parses back


def test_bind_unix_replaces_a_stale_socket_and_sets_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "run" / "x.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, as after a crash
    sock = bind(Address("unix", str(path)), mode=0o660)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        with pytest.raises(ListenError, match="another server is listening"):
            clear_stale(str(path))  # a live one is never removed
        assert path.exists()
    finally:
        sock.close()


def test_bind_refuses_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "x.sock"
    path.write_text("data")
    with pytest.raises(ListenError, match="is not a socket"):
        bind(Address("unix", str(path)))
    assert path.read_text() == "data"


def test_bind_tcp_in_use_is_one_line() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: "):
            bind(Address("tcp", "127.0.0.1", port))
    finally:
        taken.close()
