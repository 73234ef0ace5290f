"""One supervised daemon: how to start it, and the restart bookkeeping.

``Child`` is plain state plus ``spawn``/``poll``; the supervisor decides when. The
restart delay is the skeleton's (``daemon.supervisor.next_delay``, the same back-off as
pre-forked workers): it doubles after each exit that came sooner than
``STABLE_SECONDS`` after the start, capped at ``MAX_BACKOFF`` (60 s); a daemon that
stayed up that long starts again from ``initial``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailwarden.daemon.supervisor import next_delay

__all__ = ["DAEMONS", "Child", "available", "command", "next_delay"]

DAEMONS = ("policyd", "milter", "lmtpd", "api", "fetchd")
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # daemon.metrics.ENV (without importing it)

# Module that must import for a daemon to be offered (milter needs pymilter).
_REQUIRES: dict[str, tuple[str, ...]] = {
    "policyd": ("mailwarden.policyd.server",),
    "milter": ("mailwarden.milter.app", "Milter"),
    "lmtpd": ("mailwarden.lmtpd.server",),
    "api": ("fastapi", "uvicorn"),  # the REST API (mailwarden api)
    "fetchd": ("mailwarden.fetch.daemon", "cryptography"),  # idle without accounts
}


def available(name: str) -> bool:
    """True if this installation has the daemon (and its optional dependencies)."""
    for module in _REQUIRES[name]:
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except ModuleNotFoundError:
            return False
    return True


@dataclass
class Child:
    name: str
    argv: list[str]
    metrics_port: int
    metrics_dir: str = ""  # its multi-process metrics directory (daemon.metrics)
    proc: subprocess.Popen[bytes] | None = None
    last_pid: int = 0
    started: float = 0.0
    delay: float = 0.0  # the last restart delay (0 = never restarted)
    next_start: float = 0.0  # monotonic time of the next start attempt
    restarts: int = 0
    exits: list[int] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def spawn(self) -> None:
        # A new process group: a Ctrl-C at the terminal reaches serve only, which then
        # stops the children in order.
        env = dict(os.environ)
        if self.metrics_dir:
            env[METRICS_ENV] = self.metrics_dir
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, close_fds=True, process_group=0, env=env
        )
        self.started = time.monotonic()

    def reap(self) -> int | None:
        """The exit status if the process ended since the last call, else None."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            return None
        self.last_pid = self.proc.pid
        self.proc = None
        self.exits.append(rc)
        return rc

    def signal(self, sig: signal.Signals) -> None:
        if self.running and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)


def command(
    name: str, config_path: str | None, metrics_port: int, extra: Sequence[str] = ()
) -> list[str]:
    """The argv that starts one daemon with its private metrics endpoint."""
    argv = [sys.executable, "-m", "mailwarden"]
    if config_path:
        argv += ["--config", config_path]
    return [*argv, name, "--metrics", f"127.0.0.1:{metrics_port}", *extra]
