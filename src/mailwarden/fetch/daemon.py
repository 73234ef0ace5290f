"""``mailwarden fetchd``: run every fetch account when its interval is due, until SIGTERM.

Usage: ``mailwarden fetchd [--config PATH] [--metrics HOST:PORT|none] [--workers N]
[--log-level LEVEL] [--once]``; also a child of ``mailwarden serve``.

Every ``[fetch] poll`` seconds (default 30) one query asks the store which enabled
accounts are due (``store.fetch.due``: last run + interval passed); each is handed to a
pool of ``[fetch] workers`` threads (default 4; ``--workers``) unless it is running
already. ``fetch.run.run_account`` does the work under the account's ``flock``, so a
``mailwarden fetch run`` at the same time never overlaps with it. With no account the
daemon costs one small query per poll and nothing else (idle cheaply under ``serve``).

Readiness: ``daemon.readiness.ready`` once the metrics endpoint is up. SIGTERM/SIGINT:
start no new run, let the runs in flight finish (each is bounded by ``[fetch] timeout``
per network step; a message being submitted is finished or left on the server), exit 0.
SIGHUP: logged; nothing is reloaded (restart to apply).

Metrics (labels bounded: no account, address or host): ``mailwarden_fetch_runs_total
{protocol,result}`` (result ok|error|deferred|busy), ``mailwarden_fetch_messages_total
{result}`` (delivered|refused|temporary), ``mailwarden_fetch_bytes_total``,
``mailwarden_fetch_run_seconds`` (histogram), ``mailwarden_fetch_running`` (gauge).

Errors: a config problem exits 1 with one line; a store outage is logged and retried at
the next poll; a run's failure is its account's ``last_error`` and one log line.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mailwarden import config
from mailwarden.config import Settings
from mailwarden.daemon import logging as daemon_logging
from mailwarden.daemon import options, readiness
from mailwarden.daemon.logging import lifecycle
from mailwarden.daemon.metrics import serve_http
from mailwarden.errors import StoreError
from mailwarden.fetch.options import add_arguments
from mailwarden.fetch.run import RunResult, run_account
from mailwarden.store import fetch as store
from mailwarden.store.db import Database
from mailwarden.store.fetch import Account

__all__ = ["add_arguments", "main", "run"]

log = logging.getLogger("mailwarden.fetch")
RUN_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


@dataclass(frozen=True)
class FetchMetrics:
    runs: Counter
    messages: Counter
    bytes: Counter
    seconds: Histogram
    running: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> FetchMetrics:
        return cls(
            runs=Counter(
                "mailwarden_fetch_runs_total",
                "Fetch runs, by protocol and result",
                ["protocol", "result"],
                registry=registry,
            ),
            messages=Counter(
                "mailwarden_fetch_messages_total",
                "Fetched messages, by local outcome",
                ["result"],
                registry=registry,
            ),
            bytes=Counter(
                "mailwarden_fetch_bytes_total",
                "Bytes of fetched messages delivered",
                registry=registry,
            ),
            seconds=Histogram(
                "mailwarden_fetch_run_seconds",
                "Time of one account run",
                buckets=RUN_BUCKETS,
                registry=registry,
            ),
            running=Gauge(
                "mailwarden_fetch_running",
                "Account runs in progress",
                registry=registry,
                multiprocess_mode="livesum",
            ),
        )

    def observe(self, account: Account, result: RunResult) -> None:
        self.runs.labels(account.protocol, result.result).inc()
        for outcome in result.messages:
            self.messages.labels(outcome).inc()
        self.bytes.inc(result.bytes)
        self.seconds.observe(result.seconds)


class Scheduler:
    """Polls for due accounts and runs them on a thread pool, one run per account."""

    def __init__(
        self, settings: Settings, db: Database, metrics: FetchMetrics, workers: int
    ) -> None:
        self.settings = settings
        self.db = db
        self.metrics = metrics
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="fetch")
        self.running: dict[int, Future[None]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def poll(self) -> int:
        """Start the due accounts that are not running; how many were started."""
        try:
            with self.db.transaction(write=False) as tx:
                due = store.due(tx, int(time.time()))
        except StoreError as exc:
            log.error("fetchd: cannot read the accounts: %s (retrying)", exc)
            return 0
        started = 0
        with self.lock:
            for account in due:
                if account.id in self.running or self.stop.is_set():
                    continue
                self.running[account.id] = self.pool.submit(self._one, account)
                started += 1
        return started

    def _one(self, account: Account) -> None:
        self.metrics.running.inc()
        try:
            result = run_account(self.db, account, self.settings.fetch)
            self.metrics.observe(account, result)
        except Exception:  # a store outage or a bug: logged; the next poll retries
            log.exception("fetchd: account %d (%s): run failed", account.id, account.mailbox)
            self.metrics.runs.labels(account.protocol, "error").inc()
        finally:
            self.metrics.running.dec()
            with self.lock:
                self.running.pop(account.id, None)

    def idle(self) -> bool:
        with self.lock:
            return not self.running

    def serve(self, once: bool = False) -> None:
        while not self.stop.is_set():
            self.poll()
            if once:
                break
            self.stop.wait(self.settings.fetch.poll)
        self.pool.shutdown(wait=True)


def run(settings: Settings, args: argparse.Namespace) -> int:
    daemon_logging.setup("fetchd", str(args.log_level))
    workers = int(getattr(args, "workers", None) or settings.fetch.workers)
    metrics_listen = config.metrics_listen(args.metrics, settings, "mailwarden fetchd")
    registry = CollectorRegistry()
    metrics = FetchMetrics.create(registry)
    db = Database(settings.database.url, connect_timeout=settings.database.connect_timeout)
    scheduler = Scheduler(settings, db, metrics, workers)
    if metrics_listen is not None:
        serve_http(metrics_listen, registry)

    def stop(_signum: int, _frame: object) -> None:
        scheduler.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda *_: lifecycle.info("fetchd: SIGHUP: nothing reloaded"))
    where = [metrics_listen] if metrics_listen else []
    readiness.ready(
        "fetchd", where, f"metrics; {workers} workers, polling every {settings.fetch.poll:g} s"
    )
    scheduler.serve(once=bool(getattr(args, "once", False)))
    readiness.stopping()
    db.close()
    lifecycle.info("fetchd: stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return options.standalone("fetchd", add_arguments, run, argv)
