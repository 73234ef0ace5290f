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

Listening: unix sockets (mode ``--socket-mode``, default 0666 so Postfix's ``lmtp``
client — user postfix — can connect; protect the directory instead) and/or TCP on
127.0.0.1. A stale socket file is replaced; a live one stops start-up.
Store and disk calls run in a pool of ``WORKERS`` threads (fsync releases the GIL).
SIGTERM/SIGINT: stop accepting, let deliveries in progress finish (up to
``DRAIN_SECONDS``), write the pending ``quota_usage`` rows, remove the socket files,
exit 0.

``--workers N`` (N > 1): a parent process binds the sockets and hands connections to N
worker processes, each one of the above without listeners (``lda.lmtp_workers``; one
process is one CPU because of the GIL).

Throughput: ``quota_usage`` is written behind (``delivery.usage.FreshUsage``: coalesced
per mailbox, one transaction at most every 0.5 s; across workers
``lmtp_workers.SharedUsage``) and active mailboxes are remembered for
``RECIPIENT_TTL`` seconds (``Deliverer``), so a delivery costs the Maildir write
(file fsync + ``new/`` fsync) and no store write; see docs/benchmarks.md.

Metrics (``--metrics``, default ``[metrics] listen``): ``metrics.LdaMetrics``, with the
pipe-mode counter file folded in before every scrape (see ``delivery.counters``); workers
count through that file too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry

from mailwarden.config import Settings
from mailwarden.delivery import counters
from mailwarden.delivery.deliver import Deliverer, Recorder
from mailwarden.delivery.usage import FreshUsage
from mailwarden.lmtpd import workers as lmtp_workers
from mailwarden.lmtpd.connection import Connection, Handler
from mailwarden.metrics import LdaMetrics
from mailwarden.store.db import Database

log = logging.getLogger("mailwarden.lmtpd")

WORKERS = 64
RECIPIENT_TTL = 2.0
DRAIN_SECONDS = 30.0
IDLE_TIMEOUT = 300.0  # seconds without a byte from the client (aiosmtpd's default too)
DEFAULT_MAX_SIZE = 100 * 1024 * 1024
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


def parse_listen(spec: str) -> tuple[str, str, int]:
    """``unix:/p`` or ``/p`` -> ("unix", path, 0); ``HOST:PORT``/``inet:HOST:PORT`` -> inet."""
    if spec.startswith("unix:") or spec.startswith("/"):
        return "unix", spec.removeprefix("unix:"), 0
    host, _, port = spec.removeprefix("inet:").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"invalid listen address {spec!r}: use unix:/path or HOST:PORT")
    return "inet", host.strip("[]"), int(port)


def clear_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise RuntimeError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale: nobody listens
        return
    finally:
        probe.close()
    raise RuntimeError(f"another server is listening on {path}")


class _NoMetrics:
    """A worker's recorder when no /metrics is served (nothing would read the file)."""

    def record(self, outcome: str, nbytes: int, seconds: float, **flags: object) -> None:
        pass


async def _listen(
    factory: Callable[[], Connection], spec: str, mode: int
) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    kind, where, port = parse_listen(spec)
    if kind == "unix":
        clear_stale(where)
        os.makedirs(os.path.dirname(where) or ".", exist_ok=True)
        server = await loop.create_unix_server(factory, where)
        os.chmod(where, mode)
        return server
    return await loop.create_server(factory, where, port, reuse_address=True)


def _metrics(
    settings: Settings, listen: str, recorder: PromRecorder, registry: CollectorRegistry
) -> None:
    if not listen:
        return
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
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
    listen: list[str],
    *,
    metrics_listen: str = "",
    socket_mode: int = 0o666,
    max_size: int = DEFAULT_MAX_SIZE,
    ready: Callable[[], None] | None = None,
    channel: socket.socket | None = None,
) -> None:
    """Run lmtpd until SIGTERM/SIGINT (or until the task is cancelled).

    ``channel``: run as one of ``--workers`` (``lda.lmtp_workers``): no listeners and
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
    elif metrics_listen:  # the parent serves the metrics; workers count as the pipe LDA
        recorder = counters.FileRecorder(settings.lda.metrics_dir)
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
    deliverer = Deliverer(
        settings,
        db,
        recorder,
        chown=os.geteuid() == 0,
        usage=usage,
        recipient_ttl=RECIPIENT_TTL,
    )
    handler = Handler(deliverer, max_size)
    hostname = socket.gethostname()
    connections: set[Connection] = set()

    def factory() -> Connection:
        return Connection(handler, hostname, connections, IDLE_TIMEOUT)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = [await _listen(factory, spec, socket_mode) for spec in listen]
    if channel is None:
        _metrics(settings, metrics_listen, prom, registry)
        log.info("lmtpd listening on %s", ", ".join(listen))
        waiting: Coroutine[Any, Any, Any] = stop.wait()
    else:
        waiting = lmtp_workers.receive_connections(channel, _adopter(factory), stop)
    if ready is not None:
        ready()
    try:
        await waiting
    finally:
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


def _metrics_registry(settings: Settings) -> tuple[PromRecorder, CollectorRegistry]:
    registry = CollectorRegistry()
    # The folder must be registered before the metrics: the registry collects in
    # registration order, and the fold has to land before the counters are read.
    folder = _CounterFolder(settings.lda.metrics_dir)
    registry.register(folder)
    recorder = PromRecorder(LdaMetrics.create(registry))
    folder.recorder = recorder
    _prepare_metrics_dir(settings)
    folder.collect()  # deliveries made while lmtpd was down
    return recorder, registry


async def _shutdown(
    servers: list[asyncio.AbstractServer],
    listen: list[str],
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
    for spec in listen:
        kind, where, _ = parse_listen(spec)
        if kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(where)
    log.info("lmtpd stopped")


async def _parent(
    settings: Settings,
    metrics_listen: str,
    supervisor: lmtp_workers.Supervisor,
    listeners: list[socket.socket],
) -> None:
    recorder, registry = _metrics_registry(settings)
    _metrics(settings, metrics_listen, recorder, registry)
    log.info("lmtpd listening with %d workers", supervisor.count)
    await lmtp_workers.supervise(supervisor, listeners)


def main(
    settings: Settings,
    listen: list[str],
    metrics_listen: str,
    socket_mode: int,
    max_size: int,
    *,
    workers: int = 1,
) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s mailwarden-lmtpd[%(process)d]: %(message)s"
    )
    if workers > 1:
        _prepare_metrics_dir(settings)  # the workers' lock file lives there
        return lmtp_workers.run(
            settings,
            listen,
            socket_mode,
            workers,
            worker_main=lambda channel: asyncio.run(
                serve(
                    settings, [], metrics_listen=metrics_listen, max_size=max_size, channel=channel
                )
            ),
            parent_main=lambda sup, socks: asyncio.run(
                _parent(settings, metrics_listen, sup, socks)
            ),
        )
    asyncio.run(
        serve(
            settings,
            listen,
            metrics_listen=metrics_listen,
            socket_mode=socket_mode,
            max_size=max_size,
        )
    )
    return 0
