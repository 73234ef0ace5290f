"""``mailwarden lmtpd --workers N``: N lmtpd processes behind one listening socket.

Why: one lmtpd process is one CPU (the GIL); Dovecot's LMTP uses every core. With
``--workers N`` (N > 1) the parent process binds the listening sockets, forks N workers
and hands each accepted connection to the next worker in turn (round robin, the socket
descriptor passed over a unix socket pair, ``SCM_RIGHTS``). A worker is ``lmtp.serve``
without listeners: it serves the connections it is handed, on its own event loop,
delivery core, store connection and worker threads. Round robin rather than N
processes calling ``accept`` on the shared socket: a process that wakes first would
take a whole burst of connections (asyncio accepts up to 100 per wake-up), and a
connection stays with its process for every message the client sends on it.

The processes are kept by the skeleton's ``daemon.supervisor.Supervisor`` (restart with
back-off, ``PR_SET_PDEATHSIG``, drain); this module adds what is lmtpd's own: the socket
pair per worker and the hand-over (``Dispatcher``), the worker's receiving end
(``receive_connections``) and ``SharedUsage``.

Parent: serves ``/metrics`` (every process counts into the skeleton's multi-process
directory, ``daemon.metrics.MultiProcess``; the pipe LDA's counter file is folded in
before every scrape, ``delivery.counters``); a worker that
dies is started again (1 s, doubling while it keeps dying). SIGTERM/SIGINT: stop
accepting, SIGTERM every worker (each finishes its deliveries in progress, up to
``server.DRAIN_SECONDS``, and writes its pending ``quota_usage``), remove the unix socket
files once, exit 0. A worker whose parent is gone (its socket pair closes, or the
kernel's SIGTERM) stops the same way.

``quota_usage`` across processes (``SharedUsage``): the write-behind of one process
(``delivery.usage.WriteBehindUsage``) assumes it is the only writer. With several workers,
each writer takes an ``flock`` on ``<metrics_dir>/lmtpd-usage.lock`` to write, and
writes the numbers it reads from ``maildirsize`` at that moment (not those computed at
delivery time), so the rows written follow ``maildirsize`` in time: a worker can never
write older numbers over newer ones. A change of the warning state is decided against
``warned_percent`` read from the store under the same lock, so two workers never send
the same quota warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from mailwarden.core.delivery import Usage, warning_due
from mailwarden.daemon import supervisor
from mailwarden.delivery.usage import FLUSH_INTERVAL, FreshUsage, Locate
from mailwarden.store import delivery as store
from mailwarden.store.db import Database

log = logging.getLogger("mailwarden.lmtpd")

LOCK_NAME = "lmtpd-usage.lock"
STOP_SECONDS = 60.0  # the drain limit of the whole pool (each worker has its own)


class SharedUsage(FreshUsage):
    """``FreshUsage`` for one of several worker processes (see the module doc)."""

    def __init__(
        self,
        db: Database,
        lock_path: str,
        mail_root: str,
        locate: Locate,
        interval: float = FLUSH_INTERVAL,
    ) -> None:
        super().__init__(db, mail_root, locate, interval)
        self.lock_path = lock_path

    @contextlib.contextmanager
    def _across_workers(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def record(self, mailbox_id: int, usage: Usage, thresholds: Iterable[int]) -> int | None:
        thresholds = tuple(thresholds)
        now = int(time.time())
        with self._lock:
            warned = self._warned.get(mailbox_id)
            if warned is not None and warning_due(usage.percent(), warned, thresholds)[1] == warned:
                self._pending[mailbox_id] = (usage.bytes, usage.messages, now)
                return None
        # Not known, or the warning state may change: decide against the store, one
        # process at a time, so a warning claimed by another worker is seen.
        with self._across_workers(), self._write_lock:
            with self.db.read() as tx:
                warned = store.warned_percent(tx, mailbox_id)
            due, mark = warning_due(usage.percent(), warned, thresholds)
            if mark != warned:
                with self.db.transaction() as tx:
                    store.record_usage(
                        tx, mailbox_id, usage.bytes, usage.messages, warned=mark, now=now
                    )
            with self._lock:
                self._warned[mailbox_id] = mark
                if mark == warned:
                    self._pending[mailbox_id] = (usage.bytes, usage.messages, now)
                else:
                    self._pending.pop(mailbox_id, None)
        return due

    def flush(self) -> int:
        # The lock across workers is always taken before ``_write_lock`` (as in record).
        with self._across_workers():
            return super().flush()


# --- the parent ----------------------------------------------------------------------


class Dispatcher(supervisor.Supervisor):
    """The parent: keeps N workers (the skeleton), accepts, hands connections out round
    robin over each worker's socket pair."""

    def __init__(
        self,
        count: int,
        worker_main: Callable[[socket.socket], None],
        listeners: Sequence[socket.socket],
    ) -> None:
        super().__init__(count, self._work, name="lmtpd", stop_timeout=STOP_SECONDS)
        self.worker_main = worker_main
        self.listeners = list(listeners)
        self.channels: dict[int, socket.socket] = {}  # slot -> the parent's end
        self._child_end: socket.socket | None = None
        self.next = 0

    def before_fork(self, index: int) -> None:
        parent_end, self._child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = self.channels.pop(index, None)
        if old is not None:
            old.close()
        self.channels[index] = parent_end

    def after_fork(self, index: int, pid: int) -> None:
        if self._child_end is not None:
            self._child_end.close()
            self._child_end = None
        self.channels[index].setblocking(False)  # a stuck worker must not stop the parent

    def in_worker(self, index: int) -> None:
        for sock in self.listeners:
            sock.close()
        for channel in self.channels.values():
            channel.close()  # its own parent end too: else it would not see the parent go
        self.channels = {}

    def _work(self, index: int) -> int:
        assert self._child_end is not None
        self.worker_main(self._child_end)
        return 0

    def reap(self) -> list[supervisor.Worker]:
        gone = super().reap()
        for worker in gone:
            channel = self.channels.pop(worker.index, None)
            if channel is not None:
                channel.close()
        return gone

    def accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again on the next wake-up
                log.error("lmtpd: accept failed: %s", exc)
                return
            with conn:
                self._hand_over(conn)

    def _hand_over(self, conn: socket.socket) -> None:
        channels = list(self.channels.values())
        for _ in range(len(channels)):
            channel = channels[self.next % len(channels)]
            self.next += 1
            try:
                socket.send_fds(channel, [b"c"], [conn.fileno()])
                return
            except OSError as exc:
                log.warning("lmtpd: a worker cannot take a connection: %s", exc)
        log.error("lmtpd: no worker takes connections; closing one")  # the client retries


async def receive_connections(
    channel: socket.socket, serve_one: Callable[[socket.socket], None], stop: asyncio.Event
) -> None:
    """In a worker: take the connections the parent hands over until it goes away."""
    loop = asyncio.get_running_loop()
    channel.setblocking(False)

    def readable() -> None:
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(channel, 16, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                fds = []
            if not fds:  # the parent is gone: stop like on SIGTERM
                loop.remove_reader(channel.fileno())
                stop.set()
                return
            for fd in fds:
                serve_one(socket.socket(fileno=fd))

    loop.add_reader(channel.fileno(), readable)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(channel.fileno())
        channel.close()


def run(
    listeners: Sequence[socket.socket],
    workers: int,
    *,
    worker_main: Callable[[socket.socket], None],
    parent_main: Callable[[Dispatcher], None],
) -> int:
    """Fork the workers on the bound ``listeners``, run the parent until SIGTERM/SIGINT,
    drain; the exit status."""
    dispatcher = Dispatcher(workers, worker_main, listeners)
    dispatcher.start()
    try:
        parent_main(dispatcher)
    finally:
        dispatcher.terminate()
        for sock in listeners:
            sock.close()
        status = dispatcher.drain()
        for channel in dispatcher.channels.values():
            channel.close()
    return status


async def supervise(dispatcher: Dispatcher) -> None:
    """The parent's event loop: accept and hand over, restart dead workers, stop on
    SIGTERM/SIGINT; SIGHUP is passed on to the workers."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, dispatcher.signal_all, signal.SIGHUP)

    def child_exited() -> None:
        if dispatcher.reap() and not dispatcher.stopping:
            restart()

    def restart() -> None:
        wait = dispatcher.restart_due()
        if wait is not None:
            loop.call_later(wait, restart)

    loop.add_signal_handler(signal.SIGCHLD, child_exited)
    for sock in dispatcher.listeners:
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), dispatcher.accept, sock)
    try:
        await stop.wait()
    finally:
        for sock in dispatcher.listeners:
            loop.remove_reader(sock.fileno())
        for sig in (signal.SIGCHLD, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        dispatcher.stopping = True
