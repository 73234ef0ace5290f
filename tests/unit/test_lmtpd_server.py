"""lmtpd's asyncio adapter (``lda.lmtp.Connection``) on a real localhost socket.

The protocol rules themselves are golden transcripts in test_lmtpd_protocol.py.
"""

from __future__ import annotations

import asyncio
import errno
from typing import ClassVar

import pytest

from mailwarden.config import Settings
from mailwarden.delivery.body import Body
from mailwarden.lmtpd.connection import Connection, Handler
from mailwarden.lmtpd.server import IDLE_TIMEOUT
from mailwarden.verdict import OK, Verdict


class _FlakyDeliverer:
    """Raises for recipients named ``crash*`` (DATA) or ``boom*`` (RCPT); records
    each delivery in ``delivered``."""

    settings = Settings()
    delivered: ClassVar[list[tuple[str, bytes]]] = []

    def remembered(self, address: str) -> bool:
        return address.startswith("known")

    def check_recipient(self, address: str) -> Verdict:
        if address.startswith("boom"):
            raise RuntimeError("bug in check_recipient")
        return OK

    def deliver(self, sender: str, recipient: str, data: Body) -> Verdict:
        if recipient.startswith("crash"):
            raise RuntimeError("bug in deliver")
        self.delivered.append((recipient, data.getvalue()))
        return Verdict("2.0.0", "Delivered")


async def _session(
    lines: list[str], replies: int, max_size: int = 1 << 20, *, half_close: bool = False
) -> list[str]:
    """Run ``lines`` (pipelined) against lmtpd's protocol class; the first ``replies``."""
    loop = asyncio.get_running_loop()
    handler = Handler(_FlakyDeliverer(), max_size)  # type: ignore[arg-type]
    conns: set[Connection] = set()
    server = await loop.create_server(
        lambda: Connection(handler, "mx.test", conns, IDLE_TIMEOUT), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out: list[str] = []
    try:
        writer.write("".join(line + "\r\n" for line in lines).encode())
        await writer.drain()
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(10):
            while len(out) < replies:
                line = (await reader.readline()).decode().rstrip("\r\n")
                assert line, "connection closed"
                if line[3:4] != "-":  # last line of a multi-line reply
                    out.append(line)
    finally:
        writer.close()
        server.close()
    return out


def test_data_exception_is_that_recipients_451_only() -> None:
    lines = ["LHLO t", "MAIL FROM:<s@x.test>"]
    lines += [f"RCPT TO:<{r}@x.test>" for r in ("a", "crash", "b")]
    lines += ["DATA", "Subject: t", "", "hi", "."]
    replies = asyncio.run(_session(lines, 9))
    assert [r[:3] for r in replies[:6]] == ["220", "250", "250", "250", "250", "250"]
    assert replies[6] == "354 End data with <CR><LF>.<CR><LF>"
    assert replies[7].startswith("250 2.0.0 <a@x.test> ")
    assert replies[8].startswith("451 4.3.0 <crash@x.test> ")
    assert asyncio.run(_session([*lines, "NOOP"], 11))[9:] == [
        "250 2.0.0 <b@x.test> Delivered",
        "250 2.0.0 OK",  # the session goes on: nothing desynchronised
    ]


def test_one_copy_per_mailbox_one_reply_per_rcpt() -> None:
    """The same mailbox named 1,200 times (and with +extensions): delivered once, and
    every accepted RCPT gets its reply; the 1,001st RCPT is 452 4.5.3."""
    _FlakyDeliverer.delivered.clear()
    rcpts = ["a@x.test"] * 1100 + ["a+tag@x.test", "A@x.test", "b@x.test", "a@x.test"]
    lines = ["LHLO t", "MAIL FROM:<s@x.test>"] + [f"RCPT TO:<{r}>" for r in rcpts]
    lines += ["DATA", "Subject: t", "", "hi", "."]
    replies = asyncio.run(_session(lines, 3 + len(rcpts) + 1 + 1000))
    rcpt_replies = replies[3 : 3 + len(rcpts)]
    assert rcpt_replies.count("452 4.5.3 Error: too many recipients") == len(rcpts) - 1000
    finals = replies[3 + len(rcpts) + 1 :]
    assert finals == ["250 2.0.0 <a@x.test> Delivered"] * 1000
    assert _FlakyDeliverer.delivered == [("a@x.test", b"Subject: t\n\nhi\n")]
    _FlakyDeliverer.delivered.clear()
    lines = ["LHLO t", "MAIL FROM:<s@x.test>"] + [f"RCPT TO:<{r}>" for r in rcpts[-4:]]
    replies = asyncio.run(_session([*lines, "DATA", "hi", "."], 3 + 4 + 1 + 4))
    assert replies[-4:] == [
        "250 2.0.0 <a+tag@x.test> Delivered",
        "250 2.0.0 <A@x.test> Delivered",
        "250 2.0.0 <b@x.test> Delivered",
        "250 2.0.0 <a@x.test> Delivered",
    ]
    assert sorted(r for r, _ in _FlakyDeliverer.delivered) == ["a+tag@x.test", "b@x.test"]


def test_rcpt_exception_is_451_not_500() -> None:
    replies = asyncio.run(_session(["LHLO t", "MAIL FROM:<s@x.test>", "RCPT TO:<boom@x.test>"], 4))
    assert replies[3].startswith("451 4.3.0 <boom@x.test> ")


def test_remembered_recipient_answered_without_thread() -> None:
    lines = ["LHLO t", "MAIL FROM:<>", "RCPT TO:<known@x.test>", "RCPT TO:<other@x.test>"]
    replies = asyncio.run(_session(lines, 5))
    assert replies[3:] == ["250 2.1.5 <known@x.test> Ok", "250 2.1.5 <other@x.test> Ok"]


def test_too_big_is_552_per_recipient_and_session_goes_on() -> None:
    lines = ["LHLO t", "MAIL FROM:<s@x.test>", "RCPT TO:<a@x.test>", "RCPT TO:<b@x.test>"]
    lines += ["DATA", "x" * 200, "x" * 200, ".", "NOOP"]
    replies = asyncio.run(_session(lines, 9, max_size=300))
    assert replies[6:] == [
        "552 5.3.4 <a@x.test> Message too big for system",
        "552 5.3.4 <b@x.test> Message too big for system",
        "250 2.0.0 OK",
    ]


def test_many_pipelined_messages_in_order() -> None:
    lines = ["LHLO t"]
    for n in range(50):
        lines += [f"MAIL FROM:<s{n}@x.test>", f"RCPT TO:<r{n}@x.test>", "DATA", f"m{n}", "."]
    replies = asyncio.run(_session([*lines, "QUIT"], 2 + 50 * 4 + 1))
    finals = replies[5::4][:50]
    assert finals == [f"250 2.0.0 <r{n}@x.test> Delivered" for n in range(50)]
    assert replies[-1] == "221 2.0.0 Bye"


def test_spool_error_is_421_4_3_0_never_a_bounce(monkeypatch: pytest.MonkeyPatch) -> None:
    """No room for the temp file of a large message: the client keeps it and retries."""
    from mailwarden.delivery import body

    def full(directory: str | None) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(body, "_tmpfile", full)
    _FlakyDeliverer.delivered.clear()
    lines = ["LHLO t", "MAIL FROM:<s@x.test>", "RCPT TO:<a@x.test>", "DATA"]
    lines += ["x" * 998] * 1100 + ["."]  # past the 1 MB kept in memory
    replies = asyncio.run(_session(lines, 6, max_size=1 << 24))
    assert replies[-1] == "421 4.3.0 Temporary failure, closing connection"
    assert _FlakyDeliverer.delivered == []


def test_half_closed_client_gets_every_reply() -> None:
    lines = ["LHLO t", "MAIL FROM:<s@x.test>", "RCPT TO:<a@x.test>", "DATA", "hi", "."]
    replies = asyncio.run(_session(lines, 6, half_close=True))
    assert replies[-1] == "250 2.0.0 <a@x.test> Delivered"


async def _shutdown_between_messages() -> list[str]:
    loop = asyncio.get_running_loop()
    handler = Handler(_FlakyDeliverer(), 1 << 20)  # type: ignore[arg-type]
    conns: set[Connection] = set()
    server = await loop.create_server(
        lambda: Connection(handler, "mx.test", conns, IDLE_TIMEOUT), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"LHLO t\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<a@x.test>\r\nDATA\r\nhi\r\n")
    await writer.drain()
    out = [(await reader.readline()).decode() for _ in range(11)]  # up to the 354
    for conn in list(conns):
        conn.shut_down()  # mid-message: the message is finished and answered first
    writer.write(b".\r\nNOOP\r\n")
    await writer.drain()
    out += [(await reader.readline()).decode() for _ in range(2)]
    out.append((await reader.readline()).decode())  # then the connection closes
    writer.close()
    server.close()
    return [line.rstrip("\r\n") for line in out]


def test_shutdown_finishes_the_message_then_421() -> None:
    replies = asyncio.run(_shutdown_between_messages())
    assert replies[10] == "354 End data with <CR><LF>.<CR><LF>"
    assert replies[11:] == [
        "250 2.0.0 <a@x.test> Delivered",
        "421 4.3.2 Shutting down, try again later",
        "",
    ]
