"""``mailwarden lmtpd``: the LMTP server (RFC 2033) in front of the delivery core.

Usage: ``mailwarden [--config PATH] lmtpd [--listen unix:/path|HOST:PORT ...]
[--metrics HOST:PORT] [--socket-mode 0666] [--max-size BYTES]``

Protocol (aiosmtpd's ``LMTP`` class with our handler):
    LHLO      advertises PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME, SMTPUTF8, SIZE
    RCPT      checked at once (in a worker thread): 550 5.1.1 unknown, 550 5.2.1
              disabled, 452 4.2.2 / 552 5.2.2 already full, 451 4.3.0 store down
    DATA      ONE REPLY PER ACCEPTED RECIPIENT, in RCPT order (aiosmtpd sends only
              what ``handle_DATA`` returns, so it returns the replies joined by CRLF);
              deliveries of one message run in parallel worker threads. The size limit
              is enforced here, per recipient (552 5.3.4), not by aiosmtpd, whose single
              "552 too much data" would desynchronise an LMTP client. An exception while
              delivering to one recipient answers that recipient 451 4.3.0; the others
              keep their own outcome.
    errors    anything unexpected in a hook answers 451 4.3.0 (``handle_exception``),
              never aiosmtpd's default "500 Error" (a bounce).

Listening: unix sockets (mode ``--socket-mode``, default 0666 so Postfix's ``lmtp``
client — user postfix — can connect; protect the directory instead) and/or TCP on
127.0.0.1. A stale socket file is replaced; a live one stops start-up.
Store calls never run on the event loop (``asyncio.to_thread`` on a pool of
``WORKERS`` threads). SIGTERM/SIGINT: stop accepting, let deliveries in progress
finish (up to ``DRAIN_SECONDS``), write the pending ``quota_usage`` rows, remove the
socket files, exit 0.

Throughput: ``quota_usage`` is written behind (``lda.usage.WriteBehindUsage``: coalesced
per mailbox, one transaction at most every 0.5 s) and active mailboxes are remembered
for ``RECIPIENT_TTL`` seconds (``Deliverer``), so a delivery costs the Maildir write
(file fsync + ``new/`` fsync) and no store write; see docs/benchmarks.md.

Metrics (``--metrics``, default ``[metrics] listen``): ``metrics.LdaMetrics``, with the
pipe-mode counter file folded in before every scrape (see ``lda.counters``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiosmtpd.lmtp import LMTP
from prometheus_client import CollectorRegistry

from mailwarden.config import Settings
from mailwarden.lda import counters
from mailwarden.lda.deliver import Deliverer, to_lf
from mailwarden.lda.usage import WriteBehindUsage
from mailwarden.metrics import LdaMetrics
from mailwarden.store.db import Database
from mailwarden.verdict import Verdict, tempfail

log = logging.getLogger("mailwarden.lmtpd")

WORKERS = 64
RECIPIENT_TTL = 2.0
DRAIN_SECONDS = 30.0
DEFAULT_MAX_SIZE = 100 * 1024 * 1024
OUTCOMES = ("delivered", "junk", "discarded", "unknown", "quota", "loop", "tempfail", "rejected")


def encode(verdict: Verdict, recipient: str) -> str:
    """One LMTP reply line: ``250 2.0.0 <rcpt> Delivered``."""
    text = verdict.text if f"<{recipient}>" in verdict.text else f"<{recipient}> {verdict.text}"
    return f"{verdict.smtp_code} {verdict.dsn} {text}"


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


class Handler:
    """aiosmtpd hooks; every store or disk call runs in a worker thread."""

    def __init__(self, deliverer: Deliverer, max_size: int) -> None:
        self.deliverer = deliverer
        self.max_size = max_size
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        head = [r for r in responses[:-1] if not r.startswith("250-SIZE")]
        extra = ["250-PIPELINING", "250-ENHANCEDSTATUSCODES", f"250-SIZE {self.max_size}"]
        return [*head, *extra, "250 HELP"]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        try:
            verdict = await asyncio.to_thread(self.deliverer.check_recipient, address)
        except Exception:
            log.exception("rcpt=<%s>: unexpected error", address)
            verdict = tempfail()
        if not verdict.ok:
            log.info("rcpt=<%s> refused dsn=%s %s", address, verdict.dsn, verdict.text)
            return encode(verdict, address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return f"250 2.1.5 <{address}> Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        rcpts: list[str] = list(envelope.rcpt_tos)
        data: bytes = envelope.original_content or b""
        if len(data) > self.max_size:
            too_big = Verdict("5.3.4", "Message too big for system")
            return "\r\n".join(encode(too_big, r) for r in rcpts)
        self.inflight += 1
        self.idle.clear()
        try:
            body = to_lf(data)
            sender = envelope.mail_from or ""
            results = await asyncio.gather(*(self._deliver_one(sender, r, body) for r in rcpts))
        finally:
            self.inflight -= 1
            if not self.inflight:
                self.idle.set()
        return "\r\n".join(encode(v, r) for v, r in zip(results, rcpts, strict=True))

    async def _deliver_one(self, sender: str, rcpt: str, body: bytes) -> Verdict:
        """One recipient's outcome; an exception is this recipient's 4.3.0 alone."""
        try:
            return await asyncio.to_thread(self.deliverer.deliver, sender, rcpt, body)
        except Exception:
            log.exception("deliver rcpt=<%s>: unexpected error", rcpt)
            return tempfail()

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's last resort for a hook that raised: temporary, never its 500."""
        log.error("lmtpd: unexpected error", exc_info=error)
        return f"451 4.3.0 {tempfail().text}"


# Characters of a dot-atom (RFC 5321 Atom, plus the dots between atoms).
_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~."
)


def _dot_atom(text: str) -> bool:
    return (
        bool(text) and _ATEXT.issuperset(text) and ".." not in text and text[0] != "." != text[-1]
    )


def fast_addr(arg: str) -> tuple[str, str] | None:
    """``<local@domain> rest`` with dot-atom local part and domain (what MTAs send):
    (address, rest) exactly as aiosmtpd's parser returns them; None for anything else
    (the caller falls back to that parser)."""
    if not arg.startswith("<"):
        return None
    end = arg.find(">")
    if end < 0:
        return None
    addr = arg[1:end]
    local, at, domain = addr.rpartition("@")
    rest = arg[end + 1 :].lstrip(" \t")  # the parser skips white space (and comments)
    if not at or not _dot_atom(local) or not _dot_atom(domain) or rest.startswith("("):
        return None
    return addr, rest


class _LMTP(LMTP):
    # Postfix folds lines at 998 octets; allow longer ones from other clients instead of
    # answering one "500 line too long" for all recipients.
    line_length_limit = 1 << 16

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd 1.4 parses every MAIL/RCPT address with email._header_value_parser
        # and builds a typing.Protocol class per call: the biggest CPU cost per message
        # in lmtpd. Plain addresses take this shortcut (same result; tested against it).
        found = fast_addr(arg)
        if found is not None and not (
            self.local_part_limit and len(found[0].rpartition("@")[0]) > self.local_part_limit
        ):
            return found
        return super()._getaddr(arg)


def parse_listen(spec: str) -> tuple[str, str, int]:
    """``unix:/p`` or ``/p`` -> ("unix", path, 0); ``HOST:PORT``/``inet:HOST:PORT`` -> inet."""
    if spec.startswith("unix:") or spec.startswith("/"):
        return "unix", spec.removeprefix("unix:"), 0
    host, _, port = spec.removeprefix("inet:").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"invalid listen address {spec!r}: use unix:/path or HOST:PORT")
    return "inet", host.strip("[]"), int(port)


def _clear_stale(path: str) -> None:
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


async def _listen(factory: Callable[[], _LMTP], spec: str, mode: int) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    kind, where, port = parse_listen(spec)
    if kind == "unix":
        _clear_stale(where)
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
) -> None:
    """Run lmtpd until SIGTERM/SIGINT (or until the task is cancelled)."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(WORKERS, thread_name_prefix="lmtpd"))
    registry = CollectorRegistry()
    # The folder must be registered before the metrics: the registry collects in
    # registration order, and the fold has to land before the counters are read.
    folder = _CounterFolder(settings.lda.metrics_dir)
    registry.register(folder)
    recorder = PromRecorder(LdaMetrics.create(registry))
    folder.recorder = recorder
    _prepare_metrics_dir(settings)
    folder.collect()  # deliveries made while lmtpd was down
    db = Database(settings.database.url, connect_timeout=settings.database.connect_timeout)
    usage = WriteBehindUsage(db)
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

    def factory() -> _LMTP:
        return _LMTP(
            handler,
            data_size_limit=None,
            enable_SMTPUTF8=True,
            hostname=hostname,
            ident="mailwarden lmtpd",
            loop=loop,
        )

    servers = [await _listen(factory, spec, socket_mode) for spec in listen]
    _metrics(settings, metrics_listen, recorder, registry)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("lmtpd listening on %s", ", ".join(listen))
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        await _shutdown(servers, listen, handler)
        await asyncio.to_thread(usage.close)
        db.close()


async def _shutdown(
    servers: list[asyncio.AbstractServer], listen: list[str], handler: Handler
) -> None:
    for server in servers:
        server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(handler.idle.wait(), DRAIN_SECONDS)
    for spec in listen:
        kind, where, _ = parse_listen(spec)
        if kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(where)
    log.info("lmtpd stopped")


def main(
    settings: Settings, listen: list[str], metrics_listen: str, socket_mode: int, max_size: int
) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s mailwarden-lmtpd[%(process)d]: %(message)s"
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
