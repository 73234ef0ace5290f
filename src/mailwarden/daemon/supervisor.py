"""The pre-fork supervisor: N worker processes, restarted when they die, drained on SIGTERM.

Who calls it: ``policyd.workers`` (workers inherit the listening sockets the parent
bound) and ``lmtpd.workers`` (the parent accepts and hands connections over
``SCM_RIGHTS``); ``serve`` uses ``next_delay`` for the daemons it runs as programs.
Postfix's ``master`` is the model: the parent binds, forks, reaps and restarts; the
workers do the work and nothing else.

What every daemon gets from ``Supervisor``:

- ``start``/``spawn``: fork the workers; ``work(index)`` runs in the worker and its
  result is the worker's exit status (70, EX_SOFTWARE, if it raises).
- death of the parent: a worker gets SIGTERM from the kernel when the parent dies,
  however it died (``PR_SET_PDEATHSIG``, Linux; ``die_with_parent``), so a parent
  killed hard never leaves workers holding a port.
- restart with back-off: a worker that exits while the parent is not stopping is started
  again after ``initial_backoff`` seconds, doubling after each exit sooner than
  ``STABLE_SECONDS`` after its start, up to ``MAX_BACKOFF`` (``next_delay``; a worker
  crashing at start-up does not spin the CPU).
- signals held from the fork until the worker calls ``accept_signals`` (after installing
  its own handlers), so a SIGTERM at start-up drains too instead of killing outright.
- graceful drain: ``terminate`` sends SIGTERM to every worker; each stops accepting,
  finishes what is in flight and exits; ``drain`` waits up to ``stop_timeout`` seconds,
  then SIGKILLs what is left. SIGHUP to the parent is passed on to the workers (each
  reloads what it can: ``readiness.on_reload``).

``run`` is the whole parent for a daemon whose parent has nothing else to do (policyd):
signals, start, reap/restart every ``TICK``, drain. A parent with its own event loop
(lmtpd's) calls ``start``/``reap``/``restart_due``/``terminate``/``drain`` itself.

Errors: none of its own; a worker's exception is logged with its traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailwarden.daemon.logging import lifecycle

log = logging.getLogger("mailwarden.daemon")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
MAX_BACKOFF = 60.0
STABLE_SECONDS = 60.0
TICK = 0.1
EX_SOFTWARE = 70
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def next_delay(previous: float, uptime: float, initial: float) -> float:
    """Seconds to wait before the next start after an exit following ``uptime`` seconds."""
    if previous <= 0 or uptime >= STABLE_SECONDS:
        return initial
    return min(previous * 2, MAX_BACKOFF)


def exit_text(status: int) -> str:
    """``os.wait`` status as a reader says it: ``exit status 1`` / ``signal 9``."""
    code = os.waitstatus_to_exitcode(status)
    return f"signal {-code}" if code < 0 else f"exit status {code}"


def accept_signals() -> None:
    """In a worker, once its SIGTERM/SIGINT handlers are installed: let them come (one
    that arrived since the fork is delivered now). A no-op outside a worker."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGTERM this process when ``parent`` dies, even of SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Worker:
    index: int
    pid: int
    started: float


class Supervisor:
    """Keeps ``count`` workers running ``work(index)``; see the module doc."""

    def __init__(
        self,
        count: int,
        work: Callable[[int], int],
        *,
        name: str,
        initial_backoff: float = 1.0,
        stop_timeout: float = 60.0,
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.count = count
        self.work = work
        self.name = name
        self.initial_backoff = initial_backoff
        self.stop_timeout = stop_timeout
        self.on_exit = on_exit  # in the parent, with the pid of a finished worker
        self.workers: dict[int, Worker] = {}  # pid -> worker
        self.delays = [0.0] * count
        self.restart_at: dict[int, float] = {}  # index -> monotonic time
        self.stopping = False
        self.failed = False  # a worker exited non-zero during the drain
        self.parent = os.getpid()

    # --- hooks for daemons with more per-worker state (lmtpd's socket pairs) ---------

    def before_fork(self, index: int) -> None:
        """In the parent, just before worker ``index`` is forked."""

    def after_fork(self, index: int, pid: int) -> None:
        """In the parent, just after."""

    def in_worker(self, index: int) -> None:
        """In the new worker, before ``work``: close what belongs to the parent."""

    # --- the parent -------------------------------------------------------------------

    def start(self) -> None:
        for index in range(self.count):
            self.spawn(index)

    def spawn(self, index: int) -> int:
        self.before_fork(index)
        pid = os.fork()
        if pid == 0:
            self._worker(index)  # never returns
        self.workers[pid] = Worker(index, pid, time.monotonic())
        self.after_fork(index, pid)
        if self.stopping:  # SIGTERM came while forking: terminate did not see this one
            os.kill(pid, signal.SIGTERM)
        lifecycle.info("%s: worker %d started (slot %d)", self.name, pid, index)
        return pid

    def reap(self) -> list[Worker]:
        """Collect exited workers without blocking; schedule their restarts."""
        gone: list[Worker] = []
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            gone.append(worker)
            self.on_exit(pid)
            if self.stopping:
                self.failed |= os.waitstatus_to_exitcode(status) > 0  # SIGTERM is fine
                continue
            self._schedule(worker, status)
        return gone

    def _schedule(self, worker: Worker, status: int) -> None:
        now = time.monotonic()
        delay = next_delay(self.delays[worker.index], now - worker.started, self.initial_backoff)
        self.delays[worker.index] = delay
        self.restart_at[worker.index] = now + delay
        log.error(
            "%s: worker %d exited (%s); starting slot %d again in %gs",
            self.name,
            worker.pid,
            exit_text(status),
            worker.index,
            delay,
        )

    def restart_due(self) -> float | None:
        """Start the workers whose delay is over; seconds until the next one, or None."""
        now = time.monotonic()
        for index, when in sorted(self.restart_at.items()):
            if self.stopping:
                self.restart_at.clear()
                return None
            if when <= now:
                del self.restart_at[index]
                self.spawn(index)
        return min(self.restart_at.values()) - now if self.restart_at else None

    def signal_all(self, sig: int) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def terminate(self) -> None:
        """Begin the drain: no more restarts, SIGTERM to every worker."""
        self.stopping = True
        self.restart_at.clear()
        self.signal_all(signal.SIGTERM)

    def drain(self) -> int:
        """Wait for the workers after ``terminate``; SIGKILL after ``stop_timeout``.
        0 when every worker stopped cleanly."""
        deadline = time.monotonic() + self.stop_timeout
        while self.workers and time.monotonic() < deadline:
            if not self.reap():
                time.sleep(TICK / 2)
        if self.workers:
            log.error(
                "%s: %d worker(s) still running after %gs; killed",
                self.name,
                len(self.workers),
                self.stop_timeout,
            )
            self.signal_all(signal.SIGKILL)
            while self.workers:
                if not self.reap():
                    time.sleep(TICK / 2)
            self.failed = True
        return 1 if self.failed else 0

    def run(self) -> int:
        """The whole parent: signals, start, restart until SIGTERM/SIGINT, drain."""

        def stop(_signum: int, _frame: object) -> None:
            self.terminate()

        def hup(_signum: int, _frame: object) -> None:
            self.signal_all(signal.SIGHUP)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
        self.start()
        while not self.stopping:
            self.reap()
            wait = self.restart_due()
            time.sleep(TICK if wait is None else max(0.0, min(TICK, wait)))
        return self.drain()

    # --- the worker -------------------------------------------------------------------

    def _worker(self, index: int) -> None:
        code = EX_SOFTWARE
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker reloads on it
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(-1)
            self.workers = {}  # the worker's copy: it must not signal its siblings
            # Held until the worker's own handlers are in place (``accept_signals``): a
            # SIGTERM in between then drains like any other instead of killing outright.
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            die_with_parent(self.parent)
            self.in_worker(index)
            code = self.work(index)
        except BaseException:
            log.exception("%s: worker %d failed", self.name, index)
        finally:
            logging.shutdown()
            os._exit(code)
