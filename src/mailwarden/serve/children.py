"""One supervised daemon: how to start it, and the restart bookkeeping.

``Child`` is plain state plus ``spawn``/``poll``; the supervisor decides when. The
restart delay doubles after each exit that came sooner than ``STABLE_SECONDS`` after
the start, capped at ``MAX_BACKOFF`` (60 s); a daemon that stayed up that long starts
again from ``initial``.
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

DAEMONS = ("policyd", "milter", "lmtpd")
MAX_BACKOFF = 60.0
STABLE_SECONDS = 60.0

# Module that must import for a daemon to be offered (milter needs pymilter).
_REQUIRES: dict[str, tuple[str, ...]] = {
    "policyd": ("mailwarden.policyd.server",),
    "milter": ("mailwarden.milter.app", "Milter"),
    "lmtpd": ("mailwarden.lmtpd.server",),
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


def next_delay(previous: float, uptime: float, initial: float) -> float:
    """Seconds to wait before the next start after an exit following ``uptime`` seconds."""
    if previous <= 0 or uptime >= STABLE_SECONDS:
        return initial
    return min(previous * 2, MAX_BACKOFF)


@dataclass
class Child:
    name: str
    argv: list[str]
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None
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
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, close_fds=True, process_group=0
        )
        self.started = time.monotonic()

    def reap(self) -> int | None:
        """The exit status if the process ended since the last call, else None."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            return None
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
