"""``mailwarden policyd``: wire the policy daemon together and run it until SIGTERM.

Usage: ``mailwarden policyd [--config PATH] [--listen ADDR]... [--metrics HOST:PORT|none]
[--workers N] [--log-level LEVEL]`` (options defined in ``admin.policyd``), or
``python -m mailwarden.policyd`` with the same options. ``ADDR`` is ``HOST:PORT`` (also
``inet:HOST:PORT``, ``[v6]:PORT``) or ``unix:/path``; ``--listen`` replaces
``policy.listen`` from the config, ``--metrics`` replaces ``metrics.listen`` (``none``
switches the endpoint off: ``config.metrics_listen``). ``--workers N`` (N > 1) serves
the same addresses from N pre-forked processes (see ``policyd.workers``); the parent
then serves the metrics of all of them (prometheus_client multi-process mode).

This is the only module that names the concrete classes (DESIGN §3.6): settings are
loaded once and passed down. Readiness: the line ``policyd: listening on ...`` is logged
once every socket is bound. SIGTERM/SIGINT close the listeners and exit 0.

Errors: a config or listen problem exits 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client import values as prometheus_values

from mailwarden import config
from mailwarden.admin.policyd import add_arguments
from mailwarden.config import Settings
from mailwarden.errors import ConfigError, MailwardenError
from mailwarden.metrics import PolicyMetrics
from mailwarden.policyd import workers
from mailwarden.policyd.cache import TTLCache
from mailwarden.policyd.checks import Engine
from mailwarden.policyd.server import PolicyServer
from mailwarden.policyd.state import Transactions
from mailwarden.store.db import Database

log = logging.getLogger("mailwarden.policyd")
WORKERS = 16


def parse_listen(text: str) -> tuple[str, str, int]:
    """``("unix", path, 0)`` or ``("tcp", host, port)``; ConfigError when unusable."""
    value = text.strip()
    if value.startswith("unix:"):
        path = value[5:]
        if not os.path.isabs(path):
            raise ConfigError(f"listen address {text!r}: unix socket path must be absolute")
        return "unix", path, 0
    value = value.removeprefix("inet:")
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"listen address {text!r}: expected HOST:PORT or unix:/path")
    return "tcp", host, int(port)


async def _listen(server: PolicyServer, address: str) -> asyncio.AbstractServer:
    kind, where, port = parse_listen(address)
    loop = asyncio.get_running_loop()
    if kind == "tcp":
        return await loop.create_server(server.protocol, where, port, backlog=1024)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(where).st_mode):
            os.unlink(where)  # a stale socket from an earlier run
    srv = await loop.create_unix_server(server.protocol, where, backlog=1024)
    os.chmod(where, 0o666)  # noqa: S103 - smtpd runs as postfix, Exim as Debian-exim
    return srv


def build(settings: Settings, registry: CollectorRegistry) -> PolicyServer:
    metrics = PolicyMetrics.create(registry)
    db = Database(settings.database.url, connect_timeout=settings.database.connect_timeout)
    cache = TTLCache(settings.policy.cache_ttl, settings.policy.cache_size)
    engine = Engine(settings, db, cache, Transactions(), metrics=metrics)
    executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="policyd-store")
    return PolicyServer(engine, executor, metrics, request_timeout=settings.policy.request_timeout)


async def amain(settings: Settings, listen: Sequence[str], metrics_listen: str | None) -> int:
    registry = CollectorRegistry()
    server = build(settings, registry)
    servers = [await _listen(server, address) for address in listen]
    if metrics_listen is not None:
        _, host, port = parse_listen(metrics_listen)
        start_http_server(port, host, registry=registry)
    log.warning("policyd: listening on %s", ", ".join(listen))
    return await _serve(server, servers)


async def aworker(settings: Settings, sockets: Sequence[socket.socket]) -> int:
    """One pre-forked worker (``--workers``): serve the sockets its parent bound."""
    server = build(settings, CollectorRegistry())  # multi-process metrics: see _supervise
    loop = asyncio.get_running_loop()
    servers: list[asyncio.AbstractServer] = []
    for sock in sockets:
        if sock.family == socket.AF_UNIX:
            servers.append(await loop.create_unix_server(server.protocol, sock=sock))
        else:
            servers.append(await loop.create_server(server.protocol, sock=sock))
    return await _serve(server, servers)


async def _serve(server: PolicyServer, servers: Sequence[asyncio.AbstractServer]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for srv in servers:
        srv.close()
    server.executor.shutdown(wait=False, cancel_futures=True)
    log.warning("policyd: stopped")
    return 0


def _supervise(
    settings: Settings, listen: Sequence[str], metrics_listen: str | None, n: int
) -> int:
    """Bind, fork ``n`` workers, serve the metrics of all of them, wait for SIGTERM."""
    sockets = workers.bind([parse_listen(address) for address in listen], n)
    metrics_dir = ""
    if metrics_listen is not None:
        # prometheus_client's multi-process mode: every worker writes its samples to
        # files in this directory; the parent's endpoint adds them up.
        metrics_dir = tempfile.mkdtemp(prefix="mailwarden-policyd-metrics.")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    def work(socks: list[socket.socket]) -> int:
        if metrics_dir:
            prometheus_values.ValueClass = prometheus_values.MultiProcessValue()  # type: ignore[no-untyped-call]
        return asyncio.run(aworker(settings, socks))

    def reaped(pid: int) -> None:
        if metrics_dir:
            multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]

    supervisor = workers.Supervisor(sockets, work, on_exit=reaped)
    try:
        supervisor.start()
        if metrics_dir and metrics_listen is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
            _, host, port = parse_listen(metrics_listen)
            start_http_server(port, host, registry=registry)
        log.warning("policyd: listening on %s (%d workers)", ", ".join(listen), n)
        status = supervisor.wait()
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    log.warning("policyd: stopped")
    return status


def run(settings: Settings, args: argparse.Namespace) -> int:
    n = int(getattr(args, "workers", None) or settings.policy.workers)
    name = "%(name)s[%(process)d]" if n > 1 else "%(name)s"
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper()),
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    listen = tuple(args.listen or settings.policy.listen)
    for address in listen:
        parse_listen(address)  # fail before binding anything
    metrics_listen = config.metrics_listen(args.metrics, settings, "mailwarden policyd")
    if n > 1:
        return _supervise(settings, listen, metrics_listen, n)
    return asyncio.run(amain(settings, listen, metrics_listen))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailwarden-policyd")
    parser.add_argument("--config", metavar="PATH")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(config.load(args.config), args)
    except MailwardenError as exc:
        print(f"mailwarden policyd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
