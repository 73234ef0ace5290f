"""``daemon.listen.bind``: TCP listening sockets carry TCP_NODELAY, and the connections
they accept inherit it (asyncio would not set it: their ``proto`` is 0). Without it an
answer written in two parts waits for the client's delayed ACK (40 ms) on keep-alive
connections - every uvicorn response of ``mailwarden api`` (bench/bench_api.py)."""

from __future__ import annotations

import socket

from mailwarden.daemon.listen import bind, parse


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tcp_listener_and_accepted_connections_have_nodelay() -> None:
    sock = bind(parse(f"127.0.0.1:{_free_port()}"))
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        with socket.create_connection(sock.getsockname(), timeout=5):
            conn, _ = sock.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()
