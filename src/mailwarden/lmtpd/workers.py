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

Parent: serves ``/metrics`` (the workers count through the counter file, like the pipe
LDA, folded into the metrics before every scrape: ``delivery.counters``); a worker that dies
is started again after one second. SIGTERM/SIGINT: stop accepting, SIGTERM every worker
(each finishes its deliveries in progress, up to ``lmtp.DRAIN_SECONDS``, and writes its
pending ``quota_usage``), remove the unix socket files once, exit 0. A worker whose
parent is gone (its socket pair closes) stops the same way.

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
from collections.abc import Callable, Iterable, Iterator

from mailwarden.config import Settings
from mailwarden.core.delivery import Usage, warning_due
from mailwarden.delivery.usage import FLUSH_INTERVAL, FreshUsage, Locate
from mailwarden.store import delivery as store
from mailwarden.store.db import Database

log = logging.getLogger("mailwarden.lmtpd")

RESPAWN_SECONDS = 1.0
LOCK_NAME = "lmtpd-usage.lock"

StartWorker = Callable[[socket.socket, socket.socket], int]  # (worker's end, parent's) -> pid


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


class Worker:
    """One worker process and the parent's end of its socket pair."""

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self.channel = channel


def _bind(spec: str, mode: int) -> socket.socket:
    from mailwarden.lmtpd.server import clear_stale, parse_listen

    kind, where, port = parse_listen(spec)
    if kind == "unix":
        clear_stale(where)
        os.makedirs(os.path.dirname(where) or ".", exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(where)
        os.chmod(where, mode)
    else:
        family = socket.AF_INET6 if ":" in where else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((where, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Supervisor:
    """The parent: accepts, hands connections out round robin, keeps N workers."""

    def __init__(self, workers: int, start_worker: StartWorker) -> None:
        self.count = workers
        self.start_worker = start_worker
        self.workers: list[Worker] = []
        self.next = 0
        self.stopping = False

    def spawn(self) -> Worker:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = self.start_worker(child_end, parent_end)
        child_end.close()
        parent_end.setblocking(False)  # a stuck worker must not stop the parent
        worker = Worker(pid, parent_end)
        self.workers.append(worker)
        log.info("lmtpd: worker %d started", pid)
        return worker

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
        for _ in range(len(self.workers)):
            worker = self.workers[self.next % len(self.workers)]
            self.next += 1
            try:
                socket.send_fds(worker.channel, [b"c"], [conn.fileno()])
                return
            except OSError as exc:
                log.warning("lmtpd: worker %d cannot take a connection: %s", worker.pid, exc)
        log.error("lmtpd: no worker takes connections; closing one")  # the client retries

    def reap(self) -> list[int]:
        """Collect exited workers; the pids that exited."""
        gone = []
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            gone.append(pid)
            for worker in [w for w in self.workers if w.pid == pid]:
                worker.channel.close()
                self.workers.remove(worker)
            if not self.stopping:
                code = os.waitstatus_to_exitcode(status)
                how = f"signal {-code}" if code < 0 else f"status {code}"
                log.error("lmtpd: worker %d exited (%s); starting another", pid, how)
        return gone

    def terminate(self) -> None:
        self.stopping = True
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)


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
    settings: Settings,
    listen: list[str],
    socket_mode: int,
    workers: int,
    *,
    worker_main: Callable[[socket.socket], None],
    parent_main: Callable[[Supervisor, list[socket.socket]], None],
) -> int:
    """Bind, fork the workers, run the parent until SIGTERM/SIGINT; the exit status."""
    listeners = [_bind(spec, socket_mode) for spec in listen]

    def start_worker(channel: socket.socket, parent_end: socket.socket) -> int:
        pid = os.fork()
        if pid:
            return pid
        status = 0
        try:
            parent_end.close()  # else the worker would not see its parent go away
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            for sock in listeners:
                sock.close()
            for other in supervisor.workers:
                other.channel.close()
            worker_main(channel)
        except BaseException:
            log.exception("lmtpd: worker failed")
            status = 1
        finally:
            logging.shutdown()
            os._exit(status)

    supervisor = Supervisor(workers, start_worker)
    for _ in range(workers):
        supervisor.spawn()
    try:
        parent_main(supervisor, listeners)
    finally:
        supervisor.terminate()
        for sock in listeners:
            sock.close()
        deadline = time.monotonic() + 60
        while supervisor.workers and time.monotonic() < deadline:
            if not supervisor.reap():
                time.sleep(0.05)
        _remove_sockets(listen)
    return 0


def _remove_sockets(listen: list[str]) -> None:
    from mailwarden.lmtpd.server import parse_listen

    for spec in listen:
        kind, where, _ = parse_listen(spec)
        if kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(where)


async def supervise(supervisor: Supervisor, listeners: list[socket.socket]) -> None:
    """The parent's event loop: accept and hand over, restart dead workers, stop on
    SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def child_exited() -> None:
        for _ in supervisor.reap():
            if not supervisor.stopping:
                loop.call_later(RESPAWN_SECONDS, respawn)

    def respawn() -> None:
        if not supervisor.stopping and len(supervisor.workers) < supervisor.count:
            supervisor.spawn()

    loop.add_signal_handler(signal.SIGCHLD, child_exited)
    for sock in listeners:
        loop.add_reader(sock.fileno(), supervisor.accept, sock)
    try:
        await stop.wait()
    finally:
        for sock in listeners:
            loop.remove_reader(sock.fileno())
        loop.remove_signal_handler(signal.SIGCHLD)
        supervisor.stopping = True
