"""lmtpd's connections: the LMTP codec (``lmtpd.protocol``) on an asyncio socket.

``Connection`` (one per client) feeds the bytes it reads to a ``Session`` and answers its
events: ``Reply`` is written as it is, ``Rcpt`` and ``Message`` go to the ``Handler``,
which asks the delivery core (``delivery.deliver.Deliverer``). All replies produced by one
read leave in one write. ``lmtpd.server`` builds both and runs the server.

One copy per mailbox: the recipients of one message that name the same final mailbox
(the same address, or the same one with another ``+extension``) are delivered to once;
each of them still gets its own reply (RFC 2033: one per accepted RCPT), the first
one's outcome. The message body (``delivery.body.Body``, maybe a temp file) is closed
once its deliveries are done, or when the connection is lost in the middle of DATA.

Errors: an exception in the delivery core is that recipient's 451 4.3.0 (``Handler``);
anything unexpected in the connection itself (a spool write error included) answers
421 4.3.0 and closes it, logged with its traceback. Nothing here answers 2xx or 5xx
after an unexpected error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mailwarden import address
from mailwarden.delivery.body import Body
from mailwarden.delivery.deliver import Deliverer
from mailwarden.errors import UsageError
from mailwarden.lmtpd.protocol import Message, Rcpt, Reply, Session
from mailwarden.verdict import OK, Verdict, tempfail

log = logging.getLogger("mailwarden.lmtpd")


class Handler:
    """Answers the codec's RCPT and DATA events with the delivery core.

    A remembered recipient (``Deliverer.remembered``) is answered on the event loop;
    other RCPT checks and every delivery run in worker threads (the fsyncs release the
    GIL). The deliveries of one message run in parallel; an exception while delivering
    to one recipient is that recipient's 451 4.3.0 alone.
    """

    def __init__(self, deliverer: Deliverer, max_size: int) -> None:
        self.deliverer = deliverer
        self.max_size = max_size
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def rcpt_now(self, address: str) -> Verdict | None:
        return OK if self.deliverer.remembered(address) else None

    async def rcpt(self, address: str) -> Verdict:
        loop = asyncio.get_running_loop()
        try:
            verdict = await loop.run_in_executor(None, self.deliverer.check_recipient, address)
        except Exception:
            log.exception("rcpt=<%s>: unexpected error", address)
            verdict = tempfail()
        if not verdict.ok:
            log.info("rcpt=<%s> refused dsn=%s %s", address, verdict.dsn, verdict.text)
        return verdict

    def mailbox_key(self, rcpt: str) -> str:
        """The final mailbox ``rcpt`` names (its ``+extension`` dropped), as the delivery
        core looks it up; an address that does not parse is its own key."""
        delimiter = self.deliverer.settings.mail.recipient_delimiter
        try:
            parsed = address.parse_address(rcpt, delimiter=delimiter)
        except UsageError:
            return rcpt
        return str(address.strip_extension(parsed, delimiter))

    async def message(self, msg: Message) -> list[Verdict]:
        try:
            if msg.too_big:
                return [Verdict("5.3.4", "Message too big for system")] * len(msg.recipients)
            return await self._deliver_all(msg)
        finally:
            msg.body.close()

    async def _deliver_all(self, msg: Message) -> list[Verdict]:
        self.inflight += 1
        self.idle.clear()
        try:
            if len(msg.recipients) == 1:
                return [await self._deliver_one(msg.sender, msg.recipients[0], msg.body)]
            keys = [self.mailbox_key(r) for r in msg.recipients]
            first: dict[str, int] = {}
            for i, key in enumerate(keys):
                first.setdefault(key, i)
            if len(first) < len(keys):
                log.info(
                    "deliver: %d recipients, %d distinct mailboxes: one copy each",
                    len(keys),
                    len(first),
                )
            jobs = (
                self._deliver_one(msg.sender, msg.recipients[i], msg.body) for i in first.values()
            )
            done = dict(zip(first.values(), await asyncio.gather(*jobs), strict=True))
            return [done[first[key]] for key in keys]
        finally:
            self.inflight -= 1
            if not self.inflight:
                self.idle.set()

    async def _deliver_one(self, sender: str, rcpt: str, body: Body) -> Verdict:
        """One recipient's outcome; an exception is this recipient's 4.3.0 alone."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self.deliverer.deliver, sender, rcpt, body)
        except Exception:
            log.exception("deliver rcpt=<%s>: unexpected error", rcpt)
            return tempfail()


_TEMPFAIL_CLOSE = b"421 4.3.0 Temporary failure, closing connection\r\n"
_TIMEOUT_CLOSE = b"421 4.4.2 Idle too long, closing connection\r\n"
_SHUTDOWN_CLOSE = b"421 4.3.2 Shutting down, try again later\r\n"
PAUSE_ABOVE = 1 << 20  # bytes buffered while a reply is pending: stop reading


class Connection(asyncio.Protocol):
    """One LMTP connection: bytes to the codec, its events to the ``Handler``.

    Unexpected errors close the connection with 421 4.3.0 (the client retries) and are
    logged with their traceback; no path answers 2xx or 5xx after one.
    """

    def __init__(
        self, handler: Handler, hostname: str, connections: set[Connection], timeout: float
    ) -> None:
        self.handler = handler
        self.session = Session(hostname, handler.max_size)
        self.connections = connections
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self.eof = False
        self.closing = False
        self.last = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connections.add(self)
        loop = asyncio.get_running_loop()
        self.last = loop.time()
        self.timer = loop.call_later(self.timeout, self._check_idle)
        transport.write(self.session.greeting())

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.transport = None
        self.session.close()  # a message cut off in DATA (a complete one: Handler.message)
        if self.timer is not None:
            self.timer.cancel()

    def eof_received(self) -> bool:
        """The client half-closed: answer what it sent, then close (``_pump``)."""
        self.eof = True
        if self.task is None:
            self._pump()
        return True

    def data_received(self, data: bytes) -> None:
        self.last = asyncio.get_running_loop().time()
        self.session.receive(data)
        if self.task is None:
            self._pump()
        elif self.session.buffered > PAUSE_ABOVE and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    def _pump(self) -> None:
        """Answer every complete command buffered, until one needs the handler."""
        if self.transport is None:  # the client is gone: deliver nothing it may resend
            return
        if self.closing and not self.session.busy:
            self._send([_SHUTDOWN_CLOSE], close=True)
            return
        out: list[bytes] = []
        try:
            while (event := self.session.next_event()) is not None:
                if isinstance(event, Reply):
                    out.append(event.data)
                    if event.close:
                        self._send(out, close=True)
                        return
                elif isinstance(event, Rcpt):
                    verdict = self.handler.rcpt_now(event.address)
                    if verdict is None:
                        self.task = asyncio.ensure_future(self._answer_rcpt(event))
                        break
                    out.append(self.session.answer_rcpt(verdict))
                else:
                    self.task = asyncio.ensure_future(self._answer_message(event))
                    break
        except Exception:
            log.exception("lmtpd: unexpected error")
            self._send([*out, _TEMPFAIL_CLOSE], close=True)
            return
        self._send(out, close=self.eof and self.task is None)
        if self.paused and self.task is None and self.transport is not None:
            self.transport.resume_reading()
            self.paused = False

    def _send(self, out: list[bytes], *, close: bool = False) -> None:
        if self.transport is None:
            return
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()

    async def _answer_rcpt(self, event: Rcpt) -> None:
        verdict = await self.handler.rcpt(event.address)
        self._answered(lambda: self.session.answer_rcpt(verdict))

    async def _answer_message(self, event: Message) -> None:
        verdicts = await self.handler.message(event)
        self._answered(lambda: self.session.answer_message(verdicts))

    def _answered(self, reply: Callable[[], bytes]) -> None:
        self.task = None
        try:
            data = reply()
        except Exception:
            log.exception("lmtpd: unexpected error")
            self._send([_TEMPFAIL_CLOSE], close=True)
            return
        self._send([data])
        self._pump()

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        idle = loop.time() - self.last
        if self.transport is None:
            return
        if idle >= self.timeout and self.task is None:
            log.info("lmtpd: closing a connection idle for %d s", idle)
            self._send([_TIMEOUT_CLOSE], close=True)
            return
        self.timer = loop.call_later(max(self.timeout - idle, 1.0), self._check_idle)

    def shut_down(self) -> None:
        """lmtpd stops: close now if between messages, else after this one's replies
        (its deliveries are not cut off; the client sends the next message later)."""
        self.closing = True
        if self.task is None:
            self._pump()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
