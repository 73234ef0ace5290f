"""The supervision loop: start, watch, restart with backoff, stop.

Runs in the main thread and wakes every ``TICK`` seconds; signal handlers only set a
flag. Log lines (one per event, stable wording for tests and operators)::

    serve: policyd started (pid 123)
    serve: policyd exited with status 1 after 0.4s; restart 3 in 4s
    serve: stopping policyd, milter, lmtpd
    serve: lmtpd still running after 15s; killed

``mailwarden_serve_up{daemon}`` is 1 while a child runs and its metrics port accepts
connections; ``mailwarden_serve_restarts_total{daemon}`` counts restarts.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Sequence

from mailwarden.daemon.metrics import mark_dead
from mailwarden.metrics import ServeMetrics
from mailwarden.serve.children import Child, next_delay

log = logging.getLogger("mailwarden.serve")
TICK = 0.2


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Supervisor:
    def __init__(
        self,
        children: Sequence[Child],
        metrics: ServeMetrics,
        *,
        initial_backoff: float = 1.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.children = list(children)
        self.metrics = metrics
        self.initial_backoff = initial_backoff
        self.stop_timeout = stop_timeout
        self.stopping = threading.Event()
        self.metrics_root = ""  # the daemons' metrics directories (serve.main), if any
        for child in self.children:
            metrics.up.labels(child.name).set(0)
            metrics.restarts.labels(child.name)

    def request_stop(self, signum: int = 0, frame: object = None) -> None:
        self.stopping.set()

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)

    def run(self) -> int:
        """Supervise until a stop is requested; then stop every child."""
        try:
            while not self.stopping.is_set():
                self.tick(time.monotonic())
                self.stopping.wait(TICK)
        finally:
            self.stop_all()
        return 0

    def tick(self, now: float) -> None:
        for child in self.children:
            rc = child.reap()
            if rc is not None:
                self._exited(child, rc, now)
            if not child.running and child.proc is None and now >= child.next_start:
                self._start(child)
            up = child.running and port_answers(child.metrics_port)
            self.metrics.up.labels(child.name).set(1 if up else 0)

    def _start(self, child: Child) -> None:
        try:
            child.spawn()
        except OSError as exc:
            log.error("serve: cannot start %s: %s", child.name, exc)
            self._exited(child, 127, time.monotonic())
            return
        log.warning("serve: %s started (pid %s)", child.name, child.pid)

    def _exited(self, child: Child, rc: int, now: float) -> None:
        if child.metrics_dir and child.last_pid:
            mark_dead(child.last_pid, child.metrics_dir)  # its live gauges; counts stay
        uptime = now - child.started
        child.delay = next_delay(child.delay, uptime, self.initial_backoff)
        child.next_start = now + child.delay
        child.restarts += 1
        self.metrics.restarts.labels(child.name).inc()
        self.metrics.up.labels(child.name).set(0)
        log.warning(
            "serve: %s exited with status %d after %.1fs; restart %d in %gs",
            child.name,
            rc,
            uptime,
            child.restarts,
            child.delay,
        )

    def stop_all(self) -> None:
        running = [c for c in self.children if c.running]
        if not running:
            return
        log.warning("serve: stopping %s", ", ".join(c.name for c in running))
        for child in running:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(c.running for c in running) and time.monotonic() < deadline:
            time.sleep(0.05)
        for child in running:
            if child.running:
                log.error(
                    "serve: %s still running after %gs; killed", child.name, self.stop_timeout
                )
                child.signal(signal.SIGKILL)
            if child.proc is not None:
                child.proc.wait()
            self.metrics.up.labels(child.name).set(0)
        log.warning("serve: stopped")
