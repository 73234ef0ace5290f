"""lmtpd's shortcut for MAIL/RCPT addresses gives exactly aiosmtpd's answer."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiosmtpd.lmtp import LMTP

from mailwarden.lda.lmtp import _LMTP, Handler, fast_addr
from mailwarden.verdict import OK, Verdict


class _Handler:
    pass


@pytest.fixture
def parsers() -> tuple[LMTP, _LMTP]:
    loop = asyncio.new_event_loop()
    yield LMTP(_Handler(), loop=loop), _LMTP(_Handler(), loop=loop)  # type: ignore[misc]
    loop.close()


def test_fast_path_agrees_with_aiosmtpd(parsers: tuple[LMTP, _LMTP]) -> None:
    base, ours = parsers
    rng = random.Random(7)
    atom, tail = "ab.-+_!#'=/Z9", 'ab =()\t"<>@.:;[]\\,'
    cases = ["<a@b.c>", "<a@b.c> BODY=8BITMIME", "<a@b.c> (x) B=1", "<>", "<a..b@c>", "a@b"]
    cases += ['<"q x"@b>', "<a@[1.2.3.4]>", "<@r:a@b>", "<ä@b.c>", "<a@b.c>\tX=1"]
    for _ in range(5000):
        local = "".join(rng.choice(atom) for _ in range(rng.randint(0, 6)))
        domain = "".join(rng.choice(atom) for _ in range(rng.randint(0, 6)))
        rest = "".join(rng.choice(tail) for _ in range(rng.randint(0, 8)))
        cases.append(f"<{local}@{domain}>{rest}")
    shortcut = 0
    for case in cases:
        assert ours._getaddr(case) == base._getaddr(case), case
        shortcut += fast_addr(case) is not None
    assert shortcut > 1000


class _FlakyDeliverer:
    """Raises for recipients named ``crash*`` (DATA) or ``boom*`` (RCPT)."""

    def check_recipient(self, address: str) -> Verdict:
        if address.startswith("boom"):
            raise RuntimeError("bug in check_recipient")
        return OK

    def deliver(self, sender: str, recipient: str, data: bytes) -> Verdict:
        if recipient.startswith("crash"):
            raise RuntimeError("bug in deliver")
        return Verdict("2.0.0", "Delivered")


async def _session(lines: list[str], replies: int) -> list[str]:
    """Run ``lines`` (pipelined) against lmtpd's protocol class; the first ``replies``."""
    loop = asyncio.get_running_loop()
    handler = Handler(_FlakyDeliverer(), 1 << 20)  # type: ignore[arg-type]
    server = await loop.create_server(
        lambda: _LMTP(handler, data_size_limit=None, loop=loop), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out: list[str] = []
    try:
        writer.write("".join(line + "\r\n" for line in lines).encode())
        await writer.drain()
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
        "250 OK",  # the session goes on: nothing desynchronised
    ]


def test_rcpt_exception_is_451_not_500() -> None:
    replies = asyncio.run(_session(["LHLO t", "MAIL FROM:<s@x.test>", "RCPT TO:<boom@x.test>"], 4))
    assert replies[3].startswith("451 4.3.0 <boom@x.test> ")


def test_handle_exception_answers_451() -> None:
    handler = Handler(_FlakyDeliverer(), 1)  # type: ignore[arg-type]
    reply = asyncio.run(handler.handle_exception(RuntimeError("x")))
    assert reply.startswith("451 4.3.0 ")
