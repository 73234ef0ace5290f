"""The server's read deadlines: one sweeper closes stalled and idle connections."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mailwarden import config
from mailwarden.metrics import PolicyMetrics
from mailwarden.policyd.cache import TTLCache
from mailwarden.policyd.checks import Engine
from mailwarden.policyd.server import PolicyServer
from mailwarden.policyd.state import Transactions
from mailwarden.store.db import Database
from mailwarden.store.sql import SqlStore


def _server(tmp: Path, request_timeout: float, idle_timeout: float) -> PolicyServer:
    url = f"sqlite:///{tmp}/missing.db"
    settings = config.from_dict({"database": {"url": url}})
    metrics = PolicyMetrics.create(CollectorRegistry())
    engine = Engine(
        settings, SqlStore(Database(url)), TTLCache(5, 10), Transactions(), metrics=metrics
    )
    return PolicyServer(
        engine,
        ThreadPoolExecutor(1),
        metrics,
        request_timeout=request_timeout,
        idle_timeout=idle_timeout,
    )


async def _closed_after(server: PolicyServer, data: bytes) -> float:
    """Seconds until the server closes a connection that sent ``data`` and then nothing."""
    srv = await asyncio.get_running_loop().create_server(server.protocol, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer.write(data)
    async with asyncio.timeout(10):
        assert await reader.read() == b""
    elapsed = loop.time() - started
    writer.close()
    srv.close()
    return elapsed


def test_stalled_request_closed_after_request_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = _server(tmp_path, request_timeout=0.4, idle_timeout=30)
    with caplog.at_level(logging.WARNING, "mailwarden.policyd"):
        elapsed = asyncio.run(_closed_after(server, b"request=smtpd_access_policy\nprot"))
    assert 0.4 <= elapsed < 2
    assert "incomplete request" in caplog.text
    assert server.open == 0


def test_idle_connection_closed_quietly_after_idle_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = _server(tmp_path, request_timeout=0.4, idle_timeout=0.6)
    with caplog.at_level(logging.WARNING, "mailwarden.policyd"):
        elapsed = asyncio.run(_closed_after(server, b""))
    assert 0.6 <= elapsed < 2
    assert "incomplete request" not in caplog.text


REQUEST = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
    b"client_address=192.0.2.1\nsender=a@outside.test\nrecipient=%s@example.test\n"
    b"instance=%s\n\n"
)


async def exchange(server: PolicyServer, data: bytes) -> bytes:
    """Send ``data``, half-close (as Exim's readsocket does), read until EOF."""
    srv = await asyncio.get_running_loop().create_server(server.protocol, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    async with asyncio.timeout(20):
        reply = await reader.read()
    writer.close()
    srv.close()
    return reply


def test_half_closed_client_gets_the_store_answer_then_eof(tmp_path: Path) -> None:
    # The database does not exist: the store pass fails, the answer is the 4.3.0 defer,
    # written by the task that waited for the store, and only then the connection closes.
    server = _server(tmp_path, request_timeout=5, idle_timeout=30)
    reply = asyncio.run(exchange(server, REQUEST % (b"x", b"1")))
    assert reply.startswith(b"action=DEFER_IF_PERMIT 4.3.0 ") and reply.endswith(b"\n\n")
    assert server.open == 0


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    server = _server(tmp_path, request_timeout=5, idle_timeout=30)
    data = b"".join(REQUEST % (name, str(i).encode()) for i, name in enumerate([b"a", b"b", b"c"]))
    reply = asyncio.run(exchange(server, data))
    assert reply.count(b"action=DEFER_IF_PERMIT 4.3.0") == 3, reply
    assert reply.count(b"\n\n") == 3
