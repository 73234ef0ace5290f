"""The asyncio policy server: connections, timeouts, the failure policy, logs, metrics.

Who calls it: ``policyd.__main__`` builds a ``PolicyServer`` and listens on TCP and/or
unix sockets. Postfix keeps one persistent connection per smtpd process (up to 100 by
default) and sends many requests over it; Exim's ``${readsocket}`` sends one request,
half-closes, reads the answer until EOF. Both are served by the same loop.

Per request: ``Engine.cache_pass`` in the event loop (no thread hop when the cache holds
everything); on a miss ``Engine.store_pass`` in a worker thread, bounded by
``policy.request_timeout``. Failure policy (DESIGN §3.2): a store error, a timeout or
any exception answers 4.3.0 (``DEFER_IF_PERMIT`` / Exim ``defer``) and logs; never DUNNO,
never 5xx. Nothing failed is cached, so the next request tries the store again.

Bad peers: a malformed request (see ``protocol``) is logged and the connection closed
without a reply; a client that stalls in the middle of a request is closed after
``request_timeout``; an idle connection after ``IDLE_TIMEOUT`` (both checked about once
a second by one sweeper task, not a timer per read); connections beyond
``MAX_CONNECTIONS`` are closed at once.

Logs: one line per decision (state, instance, sender, recipient, client, check, reply,
milliseconds). Metrics: ``PolicyMetrics``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from itertools import count
from typing import Any, cast

from mailwarden.errors import StoreError
from mailwarden.metrics import PolicyMetrics
from mailwarden.policyd.checks import Decision, Engine, NeedStore
from mailwarden.policyd.protocol import Decoder, ProtocolError, Request, encode
from mailwarden.verdict import tempfail

log = logging.getLogger("mailwarden.policyd")

IDLE_TIMEOUT = 600.0  # Postfix closes idle connections after 300 s (max_idle)
MAX_CONNECTIONS = 2000
SWEEP_INTERVAL = 1.0  # how often read deadlines are checked (seconds)
READ_SIZE = 65536


@dataclass(slots=True)
class _Reading:
    """One open connection as ``PolicyServer._sweep`` sees it."""

    conn: int
    transport: asyncio.WriteTransport
    deadline: float = math.inf  # loop time; inf while the connection is not reading
    pending: bool = False  # part of a request received: the deadline is request_timeout


def result_label(decision: Decision) -> str:
    verdict = decision.verdict
    if verdict.ok:
        return "permit" if decision.permit or verdict.headers else "dunno"
    return "defer" if verdict.temporary else "reject"


class PolicyServer:
    def __init__(
        self,
        engine: Engine,
        executor: Executor,
        metrics: PolicyMetrics,
        *,
        request_timeout: float = 10.0,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.engine = engine
        self.executor = executor
        self.metrics = metrics
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.open = 0
        self._ids = count(1)
        self._request_counters: dict[tuple[str, str], Any] = {}
        self._reading: dict[int, _Reading] = {}  # conn -> its read deadline
        self._sweeper: asyncio.Task[None] | None = None

    def protocol(self) -> asyncio.Protocol:
        """A protocol for one client connection (``loop.create_server(server.protocol)``)."""
        return _Connection(self)

    async def _sweep(self) -> None:
        """Close the connections whose read deadline has passed, until none is open.

        One timer for all connections, not one per read: ``asyncio.timeout`` around
        every read pushed a timer on the loop's heap and cancelled it again, which
        showed in every profile of a warm-cache request. A deadline is noticed up to
        ``SWEEP_INTERVAL`` late.
        """
        loop = asyncio.get_running_loop()
        interval = max(0.01, min(SWEEP_INTERVAL, self.request_timeout / 4))
        while self._reading:
            await asyncio.sleep(interval)
            now = loop.time()
            for reading in [r for r in self._reading.values() if r.deadline <= now]:
                if reading.pending:
                    log.warning(
                        "conn=%d closed: incomplete request for %.0fs",
                        reading.conn,
                        self.request_timeout,
                    )
                reading.deadline = math.inf
                reading.transport.abort()  # the pending read returns b""

    def _drop(self, instance: str) -> None:
        try:
            self.engine.transactions.drop(instance)
        except Exception:
            log.exception("transaction bookkeeping failed")

    def answer_now(self, req: Request) -> bytes | None:
        """The encoded reply when the cache decides ``req`` (no thread hop, no await);
        None when the store is needed (then ``answer``)."""
        started = time.perf_counter()
        try:
            decision = self.engine.cache_pass(req, int(self.engine.clock()))
        except NeedStore:
            return None
        except Exception:
            log.exception("policy check failed")
            decision = Decision(tempfail("Policy service error, try again later"))
        return self._reply(req, decision, started)

    async def answer(self, req: Request) -> bytes:
        """Decide ``req`` and return the encoded reply; never raises (4.3.0 on a bug)."""
        reply = self.answer_now(req)
        return reply if reply is not None else await self.answer_from_store(req)

    async def answer_from_store(self, req: Request) -> bytes:
        """The reply for a request the cache could not decide (``answer_now`` gave None)."""
        started = time.perf_counter()
        decision = await self._store_decision(req, int(self.engine.clock()))
        return self._reply(req, decision, started)

    def _reply(self, req: Request, decision: Decision, started: float) -> bytes:
        try:
            self.engine.apply(req, decision)
        except Exception:
            log.exception("transaction bookkeeping failed")
        try:
            reply = encode(decision.verdict, req, permit=decision.permit)
        except Exception:
            log.exception("policy reply failed")
            decision = Decision(tempfail("Policy service error, try again later"))
            reply = encode(decision.verdict, req)
        try:
            self._account(req, decision, reply, time.perf_counter() - started)
        except Exception:
            log.exception("policy accounting failed")  # the reply still goes out
        return reply

    async def _store_decision(self, req: Request, now: int) -> Decision:
        """``Engine.store_pass`` in a worker thread, bounded by ``request_timeout``."""
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self.executor, self.engine.store_pass, req, now)
        try:
            return await asyncio.wait_for(job, self.request_timeout)
        except TimeoutError:
            self.metrics.store_errors.inc()
            log.error("policy lookup timed out after %.1fs", self.request_timeout)
            return Decision(tempfail("Policy lookup timed out, try again later"))
        except StoreError as exc:
            self.metrics.store_errors.inc()
            log.error("store unavailable: %s", exc)
            return Decision(tempfail("Policy database unavailable, try again later"))
        except Exception:
            log.exception("policy check failed")
            return Decision(tempfail("Policy service error, try again later"))

    def _account(self, req: Request, decision: Decision, reply: bytes, elapsed: float) -> None:
        key = (decision.check, result_label(decision))
        counter = self._request_counters.get(key)
        if counter is None:  # bounded: a few checks x four results
            counter = self._request_counters[key] = self.metrics.requests.labels(*key)
        counter.inc()
        self.metrics.latency.observe(elapsed)
        if decision.rate_period:
            self.metrics.rate_refusals.labels(period=decision.rate_period).inc()
        if log.isEnabledFor(logging.INFO):
            text = reply.decode("utf-8", "replace").strip().removeprefix("action=")
            log.info(
                "state=%s instance=%s from=<%s> to=<%s> client=%s login=%s check=%s "
                "reply=%r ms=%.2f",
                req.state or "-",
                req.instance or "-",
                req.sender,
                req.recipient,
                req.client_address or "-",
                req.login or "-",
                decision.check,
                text,
                elapsed * 1000,
            )


class _Connection(asyncio.Protocol):
    """One client connection: bytes in, replies out, in request order.

    A plain ``asyncio.Protocol`` rather than streams: a warm-cache request is decided
    and answered inside ``data_received`` (no ``StreamReader`` future per read, no
    coroutine per request). A request that needs the store pauses reading and is
    answered by a task; the requests behind it wait in order. Malformed input closes the
    connection without a reply; EOF from the client (Exim's half-close) closes it once
    every reply is written.
    """

    def __init__(self, server: PolicyServer) -> None:
        self.server = server
        self.decoder = Decoder()
        self.queue: deque[Request] = deque()
        self.instance = ""
        self.busy = False  # a request is with the store
        self.eof = False
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self.reading: _Reading | None = None

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self.server
        self.transport = cast(asyncio.Transport, transport)
        conn = next(server._ids)
        if server.open >= server.max_connections:
            log.warning("conn=%d refused: %d connections open", conn, server.open)
            self.closed = True
            self.transport.close()
            return
        server.open += 1
        server.metrics.connections.inc()
        self.reading = server._reading[conn] = _Reading(conn, self.transport)
        self._arm()
        if server._sweeper is None or server._sweeper.done():
            server._sweeper = asyncio.get_running_loop().create_task(server._sweep())

    def data_received(self, data: bytes) -> None:
        if self.closed or self.reading is None:
            return
        try:
            requests = self.decoder.feed(data)
        except ProtocolError as exc:
            log.warning(
                "conn=%d closed without reply: malformed request: %s", self.reading.conn, exc
            )
            self._close()
            return
        self.queue.extend(requests)
        self._pump()

    def eof_received(self) -> bool:
        self.eof = True
        if not self.busy and not self.queue:
            self._close()
        return True  # we close, after the last reply

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reading, self.reading = self.reading, None
        if reading is None:
            return
        if exc is not None:
            log.info("conn=%d closed by peer: %s", reading.conn, exc)
        server = self.server
        server._reading.pop(reading.conn, None)
        server.open -= 1
        server.metrics.connections.dec()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # a client that does not read gets no more

    def resume_writing(self) -> None:
        if self.transport is not None and not self.busy and not self.closed:
            self.transport.resume_reading()

    # -- answering -------------------------------------------------------------------------

    def _pump(self) -> None:
        """Answer queued requests in order until one needs the store."""
        assert self.transport is not None and self.reading is not None
        self.reading.deadline = math.inf  # answering is bounded by request_timeout, not here
        try:
            while self.queue and not self.busy and not self.closed:
                req = self.queue.popleft()
                self._next_instance(req)
                reply = self.server.answer_now(req)
                if reply is None:
                    self.busy = True
                    self.transport.pause_reading()
                    asyncio.get_running_loop().create_task(self._slow(req))
                    return
                self.transport.write(reply)
        except Exception:
            log.exception("conn=%d closed: internal error", self.reading.conn)
            self._close()
            return
        if self.eof and not self.queue:
            self._close()
        else:
            self._arm()

    async def _slow(self, req: Request) -> None:
        try:
            reply = await self.server.answer_from_store(req)
        except Exception:  # answer_from_store answers 4.3.0 itself; this is a last resort
            log.exception("policy request failed")
            reply = encode(tempfail("Policy service error, try again later"), req)
        self.busy = False
        if self.closed or self.transport is None:
            return
        self.transport.write(reply)
        self.transport.resume_reading()
        self._pump()

    def _next_instance(self, req: Request) -> None:
        if self.instance and req.instance != self.instance:
            self.server._drop(self.instance)  # that transaction ended
        self.instance = req.instance

    def _arm(self) -> None:
        """The read deadline: request_timeout inside a request, else idle_timeout."""
        reading = self.reading
        if reading is None:
            return
        reading.pending = pending = self.decoder.pending
        timeout = self.server.request_timeout if pending else self.server.idle_timeout
        reading.deadline = asyncio.get_running_loop().time() + timeout

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()  # what is already written still goes out
