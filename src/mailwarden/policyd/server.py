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
from concurrent.futures import Executor
from dataclasses import dataclass
from itertools import count
from typing import Any

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

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection until EOF, error or timeout."""
        conn = next(self._ids)
        if self.open >= self.max_connections:
            log.warning("conn=%d refused: %d connections open", conn, self.open)
            writer.close()
            return
        self.open += 1
        self.metrics.connections.inc()
        reading = self._reading[conn] = _Reading(conn, writer.transport)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        try:
            await self._serve(reading, reader, writer)
        except (ConnectionError, OSError) as exc:
            log.info("conn=%d closed by peer: %s", conn, exc)
        except Exception:
            log.exception("conn=%d closed: internal error", conn)
        finally:
            del self._reading[conn]
            self.open -= 1
            self.metrics.connections.dec()
            writer.close()

    async def _serve(
        self, reading: _Reading, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = reading.conn
        decoder = Decoder()
        instance = ""
        loop = asyncio.get_running_loop()
        while True:
            reading.pending = pending = decoder.pending
            reading.deadline = loop.time() + (
                self.request_timeout if pending else self.idle_timeout
            )
            data = await reader.read(READ_SIZE)  # b"" also when _sweep closed it
            reading.deadline = math.inf  # answering is bounded by decide(), not here
            if not data:
                return
            try:
                requests = decoder.feed(data)
            except ProtocolError as exc:
                log.warning("conn=%d closed without reply: malformed request: %s", conn, exc)
                return
            for req in requests:
                if instance and req.instance != instance:
                    self._drop(instance)  # that transaction ended
                instance = req.instance
                writer.write(await self.answer(req))
            await writer.drain()

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

    async def answer(self, req: Request) -> bytes:
        """Decide ``req`` and return the encoded reply; never raises (4.3.0 on a bug)."""
        started = time.perf_counter()
        decision = await self.decide(req)
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

    async def decide(self, req: Request) -> Decision:
        try:
            now = int(self.engine.clock())
            return self.engine.cache_pass(req, now)
        except NeedStore:
            pass
        except Exception:
            log.exception("policy check failed")
            return Decision(tempfail("Policy service error, try again later"))
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
