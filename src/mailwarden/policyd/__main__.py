"""``mailwarden policyd``: wire the policy daemon together and run it until SIGTERM.

Usage: ``mailwarden policyd [--config PATH] [--listen ADDR]... [--metrics HOST:PORT|none]
[--workers N] [--log-level LEVEL]`` (options in ``policyd.options``), or
``python -m mailwarden.policyd`` with the same options. ``ADDR``: any spelling of
``daemon.listen`` (``HOST:PORT``, ``[v6]:PORT``, ``unix:/path`` ...); ``--listen``
replaces ``policy.listen`` from the config, ``--metrics`` replaces ``metrics.listen``
(``none`` switches the endpoint off: ``config.metrics_listen``). ``--workers N``
(N > 1) serves the same addresses from N pre-forked processes (``policyd.workers`` on
``daemon.supervisor``); the parent then serves the metrics of all of them
(``daemon.metrics.MultiProcess``).

This is the only module that names the concrete classes (DESIGN §3.6): settings are
loaded once and passed down. Readiness: ``daemon.readiness.ready`` (the line
``policyd: listening on ...`` and sd_notify READY=1) once every socket is bound.
SIGTERM/SIGINT: stop accepting, let the store look-ups in flight finish and answer (up
to ``DRAIN_SECONDS``), exit 0. SIGHUP: re-read the config file and apply
``policy.checks``, ``policy.cache_ttl`` and the other per-request settings
(``max_recipients``, limits); listen addresses, workers, the database and the metrics
address are bound at start and need a restart.

Errors: a config or listen problem exits 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry

from mailwarden import config
from mailwarden.config import Settings
from mailwarden.daemon import listen as listening
from mailwarden.daemon import logging as daemon_logging
from mailwarden.daemon import options, readiness
from mailwarden.daemon.listen import Address
from mailwarden.daemon.logging import lifecycle
from mailwarden.daemon.metrics import MultiProcess, serve_http
from mailwarden.daemon.supervisor import Supervisor, accept_signals
from mailwarden.metrics import PolicyMetrics
from mailwarden.policyd import workers
from mailwarden.policyd.cache import TTLCache
from mailwarden.policyd.checks import Engine
from mailwarden.policyd.options import add_arguments
from mailwarden.policyd.server import PolicyServer
from mailwarden.policyd.state import Transactions
from mailwarden.store.db import Database
from mailwarden.store.sql import SqlStore

__all__ = ["add_arguments", "main", "run"]

log = logging.getLogger("mailwarden.policyd")
WORKERS = 16
DRAIN_SECONDS = 10.0


def build(settings: Settings, registry: CollectorRegistry) -> PolicyServer:
    metrics = PolicyMetrics.create(registry)
    db = Database(settings.database.url, connect_timeout=settings.database.connect_timeout)
    cache = TTLCache(settings.policy.cache_ttl, settings.policy.cache_size)
    engine = Engine(settings, SqlStore(db), cache, Transactions(), metrics=metrics)
    executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="policyd-store")
    return PolicyServer(engine, executor, metrics, request_timeout=settings.policy.request_timeout)


async def _serve_on(server: PolicyServer, sock: socket.socket) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    if sock.family == socket.AF_UNIX:
        return await loop.create_unix_server(server.protocol, sock=sock)
    return await loop.create_server(server.protocol, sock=sock)


async def amain(settings: Settings, listen: Sequence[Address], metrics_listen: str | None) -> int:
    """One process: bind, serve, drain on SIGTERM."""
    registry = CollectorRegistry()
    server = build(settings, registry)
    socks = [listening.bind(address) for address in listen]
    servers = [await _serve_on(server, sock) for sock in socks]
    if metrics_listen is not None:
        serve_http(metrics_listen, registry)
    readiness.ready("policyd", listen)
    try:
        return await _serve(server, servers, settings)
    finally:
        listening.remove(list(listen))


async def aworker(settings: Settings, sockets: Sequence[socket.socket]) -> int:
    """One pre-forked worker (``--workers``): serve the sockets its parent bound."""
    server = build(settings, CollectorRegistry())  # multi-process metrics: see _supervise
    servers = [await _serve_on(server, sock) for sock in sockets]
    return await _serve(server, servers, settings)


async def _serve(
    server: PolicyServer, servers: Sequence[asyncio.AbstractServer], settings: Settings
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    readiness.on_reload(lambda: reload(server, settings.source), "policyd")
    accept_signals()
    await stop.wait()
    readiness.stopping()
    for srv in servers:
        srv.close()
    await drain(server)
    lifecycle.info("policyd: stopped")
    return 0


async def drain(server: PolicyServer, seconds: float = DRAIN_SECONDS) -> None:
    """Let the store look-ups in flight finish, and their replies go out."""
    shutdown = asyncio.to_thread(server.executor.shutdown, wait=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(shutdown, seconds)
    await asyncio.sleep(0.05)  # the requests woken by the last results write their replies
    server.executor.shutdown(wait=False, cancel_futures=True)


def reload(server: PolicyServer, source: str) -> None:
    """SIGHUP: the per-request settings from the config file (see the module doc)."""
    if not os.path.isabs(source):
        return  # the embedded default: nothing to re-read
    fresh = config.load(source)
    engine = server.engine
    engine.settings = fresh
    engine.checks = frozenset(fresh.policy.checks)
    engine.cache.ttl = fresh.policy.cache_ttl


def _supervise(
    settings: Settings, listen: Sequence[Address], metrics_listen: str | None, n: int
) -> int:
    """Bind, fork ``n`` workers, serve the metrics of all of them, drain on SIGTERM."""
    sockets = workers.bind(listen, n)
    shared = MultiProcess("policyd") if metrics_listen is not None else None

    def work(index: int) -> int:
        if shared is not None:
            shared.in_worker()
        return asyncio.run(aworker(settings, sockets[index]))

    supervisor = Supervisor(
        n, work, name="policyd", on_exit=shared.mark_dead if shared else lambda pid: None
    )
    try:
        if shared is not None and metrics_listen is not None:
            serve_http(metrics_listen, shared.registry())
        readiness.ready("policyd", listen, f"{n} workers")
        status = supervisor.run()
    finally:
        workers.close(sockets)
        listening.remove(list(listen))
        if shared is not None:
            shared.close()
    lifecycle.info("policyd: stopped")
    return status


def run(settings: Settings, args: argparse.Namespace) -> int:
    n = int(getattr(args, "workers", None) or settings.policy.workers)
    daemon_logging.setup("policyd", str(args.log_level))
    listen = listening.parse_all(args.listen or settings.policy.listen)  # before binding
    metrics_listen = config.metrics_listen(args.metrics, settings, "mailwarden policyd")
    if n > 1:
        return _supervise(settings, listen, metrics_listen, n)
    return asyncio.run(amain(settings, listen, metrics_listen))


def main(argv: Sequence[str] | None = None) -> int:
    return options.standalone("policyd", add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
