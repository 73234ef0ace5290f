"""Pre-forked workers: ``mailwarden policyd --workers N`` serves one address from N processes.

Who calls it: ``policyd.__main__`` when ``--workers`` is above 1. One asyncio loop uses one
CPU; this spreads the connections over N loops, one process each.

How: the parent binds every listen address before forking (so a bad address fails at
once, and the readiness line is true: the kernel queues connections from then on). A TCP
address gets one socket per worker, all bound to the same port with ``SO_REUSEPORT``, so
the kernel spreads new connections evenly (a shared socket lets the first loop to wake
up take most of them); a unix socket is shared by all workers. The parent keeps every
socket open, so connections queued for a worker that dies wait for its replacement.

State: each worker has its own lookup cache and ``instance`` table. That is correct
because Postfix sends every request of one transaction over the same connection
(SMTPD_POLICY_README), and a connection stays with one worker; Exim's readsocket sends one
self-contained request per connection. Rate-limit counters, the only state shared
between requests of different connections, live in the database.

Signals: SIGTERM/SIGINT to the parent are passed on to the workers; the parent exits
when they all have. A worker that dies otherwise is logged and started again (at most
once a second). A worker gets SIGTERM from the kernel when the parent dies, however it
died (``PR_SET_PDEATHSIG``).

Errors: ``ConfigError`` when an address cannot be bound (before anything is forked).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Callable, Sequence

from mailwarden.errors import ConfigError

log = logging.getLogger("mailwarden.policyd")

BACKLOG = 1024
RESPAWN_DELAY = 1.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

Address = tuple[str, str, int]  # parse_listen's ("tcp", host, port) or ("unix", path, 0)


def bind(addresses: Sequence[Address], workers: int) -> list[list[socket.socket]]:
    """The listening sockets of each worker (one list per worker, in address order)."""
    per_worker: list[list[socket.socket]] = [[] for _ in range(workers)]
    for kind, where, port in addresses:
        try:
            if kind == "unix":
                shared = _unix(where)
                for socks in per_worker:
                    socks.append(shared)
            else:
                for socks, sock in zip(per_worker, _tcp(where, port, workers), strict=True):
                    socks.append(sock)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {where}:{port}: {exc}") from None
    return per_worker


def _tcp(host: str, port: int, count: int) -> list[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    out: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        port = sock.getsockname()[1]  # port 0: the others join the port the first got
        sock.listen(BACKLOG)
        out.append(sock)
    return out


def _unix(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a stale socket from an earlier run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o666)  # noqa: S103 - smtpd runs as postfix, Exim as Debian-exim
    sock.listen(BACKLOG)
    return sock


class Supervisor:
    """Forks the workers, restarts the ones that die, passes SIGTERM on."""

    def __init__(
        self,
        sockets: list[list[socket.socket]],
        work: Callable[[list[socket.socket]], int],
        *,
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.sockets = sockets
        self.work = work  # runs in the worker; its result is the worker's exit status
        self.on_exit = on_exit  # runs in the parent with the pid of a finished worker
        self.children: dict[int, int] = {}  # pid -> worker index
        self.stopping = False
        self.parent = os.getpid()

    def start(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for index in range(len(self.sockets)):
            self._spawn(index)

    def wait(self) -> int:
        """Reap workers until all are gone after a stop; 0 on a clean stop."""
        status = 0
        while self.children:
            try:
                pid, code = os.wait()
            except ChildProcessError:
                break
            index = self.children.pop(pid, None)
            if index is None:
                continue
            self.on_exit(pid)
            if self.stopping:
                if os.waitstatus_to_exitcode(code) > 0:  # killed by our SIGTERM is fine
                    status = 1
                continue
            exitcode = os.waitstatus_to_exitcode(code)
            how = f"signal {-exitcode}" if exitcode < 0 else f"exit status {exitcode}"
            log.error("policyd: worker %d (pid %d) died (%s); starting it again", index, pid, how)
            time.sleep(RESPAWN_DELAY)
            if not self.stopping:
                self._spawn(index)
        return status

    def _stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid:
            self.children[pid] = index
            if self.stopping:  # SIGTERM came while forking: _stop did not see this one
                os.kill(pid, signal.SIGTERM)
            return
        self.children = {}  # the worker's copy: its _stop must not signal its siblings
        code = 70  # EX_SOFTWARE unless the worker returns
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _die_with(self.parent)
            code = self.work(self.sockets[index])
        except BaseException:
            log.exception("policyd: worker %d failed", index)
        finally:
            logging.shutdown()
            os._exit(code)


def _die_with(parent: int) -> None:
    """Have the kernel SIGTERM this worker when the parent dies, even of SIGKILL (Linux).

    Otherwise a parent killed hard (``mailwarden serve``'s SIGKILL after its stop timeout)
    would leave workers holding the port.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
