"""``mailwarden lmtpd``: the LMTP server (RFC 2033) in front of the delivery core.

Usage: ``mailwarden [--config PATH] lmtpd [--listen unix:/path|HOST:PORT ...]
[--metrics HOST:PORT] [--socket-mode 0666] [--max-size BYTES] [--workers N]``

Protocol: our own sans-IO codec (``lmtpd.protocol``, where the rules are listed)
behind a thin ``asyncio.Protocol`` (``lmtpd.connection``). aiosmtpd was used until its
command loop became most of lmtpd's CPU per message (measured in docs/benchmarks.md).
    LHLO      advertises PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME, SMTPUTF8, SIZE
    RCPT      550 5.1.1 unknown, 550 5.2.1 disabled, 452 4.2.2 / 552 5.2.2 already full,
              451 4.3.0 store down. A remembered active mailbox without quota limit is
              answered at once on the event loop; other checks run in a worker thread.
    DATA      ONE REPLY PER ACCEPTED RECIPIENT, in RCPT order; the deliveries of one
              message run in parallel worker threads. Over ``--max-size``: 552 5.3.4
              for each recipient. An exception while delivering to one recipient
              answers that recipient 451 4.3.0; the others keep their own outcome.
    errors    anything unexpected answers 451 4.3.0 (or 421 4.3.0 and closes the
              connection when the session state is in doubt), never 5xx.
    idle      a connection silent for ``IDLE_TIMEOUT`` seconds gets 421 4.4.2 and is closed.

Listening (``daemon.listen``: ``unix:/path``, ``HOST:PORT``, ``[v6]:PORT``): unix sockets
(mode ``--socket-mode``, default 0666 so Postfix's ``lmtp`` client — user postfix — can
connect; protect the directory instead) and/or TCP on 127.0.0.1. A stale socket file is
replaced; a live one stops start-up (``ListenError``, one line, exit 1). Readiness:
``daemon.readiness.ready`` (log line and sd_notify READY=1). No SIGHUP reload: the
settings lmtpd uses per delivery live in the deliverer's caches and its worker threads;
a restart is cheap (Postfix retries) and certain.
Store and disk calls run in a pool of ``WORKERS`` threads (fsync releases the GIL).
SIGTERM/SIGINT: stop accepting, let deliveries in progress finish (up to
``DRAIN_SECONDS``), write the pending ``quota_usage`` rows, remove the socket files,
exit 0.

``--workers N`` (N > 1): a parent process binds the sockets and hands connections to N
worker processes, each one of the above without listeners (``lmtpd.workers`` on the
skeleton's ``daemon.supervisor``; one process is one CPU because of the GIL).

Throughput: ``quota_usage`` is written behind (``delivery.usage.FreshUsage``: coalesced
per mailbox, one transaction at most every 0.5 s; across workers
``lmtpd.workers.SharedUsage``) and active mailboxes are remembered for
``RECIPIENT_TTL`` seconds (``Deliverer``), so a delivery costs the Maildir write
(file fsync + ``new/`` fsync) and no store write; see docs/benchmarks.md.

Metrics (``--metrics``, default ``[metrics] listen``): ``metrics.LdaMetrics``, with the
pipe-mode counter file folded in before every scrape and every ``FOLD_SECONDS`` (see
``delivery.counters``; under ``serve`` nobody scrapes lmtpd itself); with
``--workers`` every process counts into one ``daemon.metrics.MultiProcess`` directory and
the parent serves the sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry

from mailwarden.accounting import TrafficRecorder
from mailwarden.config import Settings
from mailwarden.daemon import listen as listening
from mailwarden.daemon import logging as daemon_logging
from mailwarden.daemon import readiness
from mailwarden.daemon.listen import Address
from mailwarden.daemon.logging import lifecycle
from mailwarden.daemon.metrics import MultiProcess, serve_http
from mailwarden.daemon.supervisor import accept_signals
from mailwarden.delivery import counters
from mailwarden.delivery.deliver import Deliverer, Recorder
from mailwarden.delivery.usage import FreshUsage
from mailwarden.lmtpd import workers as lmtp_workers
from mailwarden.lmtpd.connection import Connection, Handler
from mailwarden.metrics import LdaMetrics
from mailwarden.store.db import Database
from mailwarden.store.sql import SqlStore

log = logging.getLogger("mailwarden.lmtpd")

WORKERS = 64
RECIPIENT_TTL = 2.0
DRAIN_SECONDS = 30.0
IDLE_TIMEOUT = 300.0  # seconds without a byte from the client (aiosmtpd's default too)
DEFAULT_MAX_SIZE = 100 * 1024 * 1024
FOLD_SECONDS = 5.0  # the pipe LDA's counter file, folded at least this often
OUTCOMES = ("delivered", "junk", "discarded", "unknown", "quota", "loop", "tempfail", "rejected")


class PromRecorder:
    """``deliver.Recorder`` onto Prometheus counters."""

    def __init__(self, metrics: LdaMetrics) -> None:
        self.m = metrics
        for outcome in OUTCOMES:
            metrics.deliveries.labels(outcome)
        for result in ("sent", "suppressed"):
            metrics.vacation.labels(result)

    def record(
        self,
        outcome: str,
        nbytes: int,
        seconds: float,
        *,
        junk: bool = False,
        quota: bool = False,
        vacation: str | None = None,
    ) -> None:
        self.m.deliveries.labels(outcome).inc()
        self.m.bytes.inc(nbytes)
        self.m.latency.observe(seconds)
        if quota:
            self.m.quota_rejections.inc()
        if junk:
            self.m.junk.inc()
        if vacation:
            self.m.vacation.labels(vacation).inc()

    def fold_sink(self, e: counters.Entry) -> None:
        self.record(e.outcome, e.nbytes, e.seconds, junk=e.junk, quota=e.quota, vacation=e.vacation)


class _CounterFolder:
    """A collector with no metrics of its own: folds the pipe-mode counter file into
    the LDA metrics each time the registry is collected (it is registered first)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.recorder: PromRecorder | None = None

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        if self.recorder is None:
            return []
        try:
            counters.fold(self.directory, self.recorder.fold_sink)
        except OSError as exc:
            log.warning("metrics: cannot fold %s: %s", self.directory, exc.strerror)
        return []


class _NoMetrics:
    """A worker's recorder when no /metrics is served (nothing would read the file)."""

    def record(self, outcome: str, nbytes: int, seconds: float, **flags: object) -> None:
        pass


async def _listen(
    factory: Callable[[], Connection], address: Address, mode: int
) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    sock = listening.bind(address, mode=mode, backlog=128)
    if address.kind == "unix":
        return await loop.create_unix_server(factory, sock=sock)
    return await loop.create_server(factory, sock=sock)


def _metrics(listen: str, registry: CollectorRegistry) -> None:
    if listen:
        serve_http(listen, registry)
        log.info("metrics on http://%s/metrics", listen)


def _prepare_metrics_dir(settings: Settings) -> None:
    path = settings.lda.metrics_dir
    try:
        os.makedirs(path, mode=0o770, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(path, settings.mail.uid, settings.mail.gid)
    except OSError as exc:
        log.warning("metrics: cannot create %s: %s", path, exc.strerror)


async def serve(
    settings: Settings,
    listen: list[Address],
    *,
    metrics_listen: str = "",
    socket_mode: int = 0o666,
    max_size: int = DEFAULT_MAX_SIZE,
    ready: Callable[[], None] | None = None,
    channel: socket.socket | None = None,
) -> None:
    """Run lmtpd until SIGTERM/SIGINT (or until the task is cancelled).

    ``channel``: run as one of ``--workers`` (``lmtpd.workers``): no listeners and
    no metrics server; serve the connections handed over ``channel``.
    """
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(WORKERS, thread_name_prefix="lmtpd"))
    db = Database(settings.database.url, connect_timeout=settings.database.connect_timeout)
    recorder: Recorder
    if channel is None:
        prom, registry = _metrics_registry(settings)
        recorder = prom
        usage = FreshUsage(
            db,
            settings.mail.root,
            lambda: deliverer.remembered_mailboxes(),  # noqa: PLW0108 - built below
        )
    elif metrics_listen:  # the parent serves the metrics: MultiProcess.in_worker was called
        recorder = PromRecorder(LdaMetrics.create(CollectorRegistry()))
    else:
        recorder = _NoMetrics()
    if channel is not None:
        lock = os.path.join(settings.lda.metrics_dir, lmtp_workers.LOCK_NAME)
        usage = lmtp_workers.SharedUsage(
            db,
            lock,
            settings.mail.root,
            lambda: deliverer.remembered_mailboxes(),  # noqa: PLW0108 - built below
        )
    usage.start()
    store = SqlStore(db)
    deliverer = Deliverer(
        settings,
        store,
        recorder,
        chown=os.geteuid() == 0,
        usage=usage,
        recipient_ttl=RECIPIENT_TTL,
        traffic=TrafficRecorder(store),  # used with [traffic] counter = "daemons"
    )
    handler = Handler(deliverer, max_size)
    hostname = socket.gethostname()
    connections: set[Connection] = set()

    def factory() -> Connection:
        return Connection(handler, hostname, connections, IDLE_TIMEOUT)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    readiness.no_reload("lmtpd")  # see the module doc
    accept_signals()
    servers = [await _listen(factory, spec, socket_mode) for spec in listen]
    if channel is None:
        _metrics(metrics_listen, registry)
        readiness.ready("lmtpd", listen)
        waiting: Coroutine[Any, Any, Any] = stop.wait()
    else:
        waiting = lmtp_workers.receive_connections(channel, _adopter(factory), stop)
    if ready is not None:
        ready()
    folding = loop.create_task(_fold_every(registry)) if channel is None else None
    try:
        await waiting
    finally:
        if folding is not None:
            folding.cancel()
        await _shutdown(servers, listen, handler, connections)
        await asyncio.to_thread(usage.close)
        db.close()


def _adopter(factory: Callable[[], Connection]) -> Callable[[socket.socket], None]:
    """Serve a connection accepted elsewhere (a worker's, from the parent)."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[Any]] = set()

    def adopt(sock: socket.socket) -> None:
        task = loop.create_task(loop.connect_accepted_socket(factory, sock))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return adopt


async def _fold_every(registry: CollectorRegistry, seconds: float = FOLD_SECONDS) -> None:
    """Fold the pipe LDA's counter file now and then, not only when lmtpd's own
    ``/metrics`` is scraped: under ``serve`` nobody scrapes it (serve reads the
    multi-process directory, ``daemon.metrics``)."""
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(lambda: list(registry.collect()))


def _metrics_registry(
    settings: Settings, shared: MultiProcess | None = None
) -> tuple[PromRecorder, CollectorRegistry]:
    """The registry to serve and the recorder counting into it. ``shared``: the parent
    of ``--workers``; the registry adds up every process's samples from the directory,
    where this process's own counts (the folded pipe LDA lines) land too."""
    registry = CollectorRegistry()
    # The folder must be registered before the metrics: the registry collects in
    # registration order, and the fold has to land before the counters are read.
    folder = _CounterFolder(settings.lda.metrics_dir)
    registry.register(folder)
    if shared is None:
        recorder = PromRecorder(LdaMetrics.create(registry))
    else:
        shared.collect_into(registry)
        recorder = PromRecorder(LdaMetrics.create(CollectorRegistry()))
    folder.recorder = recorder
    _prepare_metrics_dir(settings)
    folder.collect()  # deliveries made while lmtpd was down
    return recorder, registry


async def _shutdown(
    servers: list[asyncio.AbstractServer],
    listen: list[Address],
    handler: Handler,
    connections: set[Connection],
) -> None:
    for server in servers:
        server.close()
    for conn in list(connections):
        conn.shut_down()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(handler.idle.wait(), DRAIN_SECONDS)
    for conn in list(connections):  # idle, or mid-message: the client retries
        conn.abort()
    listening.remove(listen)
    lifecycle.info("lmtpd stopped")


async def _parent(
    settings: Settings,
    metrics_listen: str,
    dispatcher: lmtp_workers.Dispatcher,
    listen: list[Address],
    shared: MultiProcess | None,
) -> None:
    folding: asyncio.Task[None] | None = None
    if shared is not None:
        _, registry = _metrics_registry(settings, shared)
        _metrics(metrics_listen, registry)
        folding = asyncio.get_running_loop().create_task(_fold_every(registry))
    readiness.ready("lmtpd", listen, f"{dispatcher.count} workers")
    try:
        await lmtp_workers.supervise(dispatcher)
    finally:
        if folding is not None:
            folding.cancel()


def main(
    settings: Settings,
    listen: list[str],
    metrics_listen: str,
    socket_mode: int,
    max_size: int,
    *,
    workers: int = 1,
) -> int:
    """``mailwarden lmtpd``: check, bind, serve (alone or from ``workers`` processes)."""
    daemon_logging.setup("lmtpd", "info")
    addresses = listening.parse_all(listen)  # ListenError (ConfigError) before binding
    if workers == 1:
        asyncio.run(
            serve(
                settings,
                addresses,
                metrics_listen=metrics_listen,
                socket_mode=socket_mode,
                max_size=max_size,
            )
        )
        return 0
    return _main_workers(
        settings,
        addresses,
        metrics_listen=metrics_listen,
        socket_mode=socket_mode,
        max_size=max_size,
        workers=workers,
    )


def _main_workers(
    settings: Settings,
    addresses: list[Address],
    *,
    metrics_listen: str,
    socket_mode: int,
    max_size: int,
    workers: int,
) -> int:
    _prepare_metrics_dir(settings)  # the workers' lock file lives there
    listeners = [listening.bind(a, mode=socket_mode, backlog=128) for a in addresses]
    shared = MultiProcess("lmtpd") if metrics_listen else None

    def worker_main(channel: socket.socket) -> None:
        if shared is not None:
            shared.in_worker()
        asyncio.run(
            serve(settings, [], metrics_listen=metrics_listen, max_size=max_size, channel=channel)
        )

    def parent_main(dispatcher: lmtp_workers.Dispatcher) -> None:
        if shared is not None:
            shared.in_worker()  # the parent's own counts (the pipe LDA's lines) go there too
        asyncio.run(_parent(settings, metrics_listen, dispatcher, addresses, shared))

    try:
        return lmtp_workers.run(
            listeners, workers, worker_main=worker_main, parent_main=parent_main
        )
    finally:
        listening.remove(addresses)
        if shared is not None:
            shared.close()
