"""The milter's negotiation, pinned by an independent client as a protocol-6 and a protocol-2 MTA.

The MTA side is the ``miltertest`` package (PyPI; its own codec, not libmilter), plus raw
frames where bytes matter (8-bit headers). The milter is the real process
(``python -m mailwarden.milter``) without scanners, on TCP and on a unix socket, with
a real SQLite store (allow lists). Each MTA plays the protocol the way the milter
negotiated it, as Postfix (protocol 6) or an old Sendmail (protocol 2, which knows no
"no reply" and no DATA step: libmilter answers CONTINUE for the milter) would:
a step the milter turned off is not sent (its macros are, as Postfix does), a step
negotiated without reply is not waited for, every other step must be answered CONTINUE.

Covered: what is negotiated (only the actions the milter uses; which steps are
answered: on TCP DATA too, on a unix socket only end of message), a clean message, a
message without any header (the DATA/EOH pitfall of libmilter's state table), forged
``X-Spam-*`` and ``X-Mailwarden-*`` headers deleted (and policyd's
``X-Mailwarden-Allowed`` kept only where and when it is true), abort in the middle of a
body and a next message on the same connection, 100 recipients, 8-bit headers;
afterwards no traceback in the milter's log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from miltertest import constants as C
from miltertest.client import MilterConnection

from tests import servers
from tests.integration.test_milter_protocol import (
    MilterProcess,
    cli,
    init_db,
    write_milter_config,
)

pytestmark = pytest.mark.integration

ACTIONS = C.SMFIF_ADDHDRS | C.SMFIF_CHGHDRS | C.SMFIF_QUARANTINE  # what the milter uses
V2_PROT = 0x7F  # protocol 2: NOCONNECT..NOEOH only


class MTA:
    """One milter connection, as an MTA speaking protocol ``version`` (6 or 2)."""

    def __init__(self, listen: str, version: int) -> None:
        if listen.startswith("unix:"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(listen[5:])
        else:
            port, _, host = listen[5:].partition("@")
            self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.conn = MilterConnection(self.sock)
        self.listen = listen
        self.version = version
        if version == 6:
            self.actions, self.protocol = self.conn.optneg_mta()
        else:
            self.conn._send(C.SMFIC_OPTNEG, version=2, actions=C.SMFI_V2_ACTS, protocol=V2_PROT)
            cmd, args = self.conn.recv()
            assert cmd == C.SMFIC_OPTNEG
            assert args["actions"] & ~C.SMFI_V2_ACTS == 0, hex(args["actions"])
            assert args["protocol"] & ~V2_PROT == 0, hex(args["protocol"])
            self.actions, self.protocol = args["actions"], args["protocol"]
        self.conn.send_macro(C.SMFIC_CONNECT, j="mx.example.test", _="client [192.0.2.7]")
        self.step(
            C.SMFIC_CONNECT,
            C.SMFIP_NOCONNECT,
            C.SMFIP_NR_CONN,
            hostname="client.example",
            family="4",
            port=4711,
            address="192.0.2.7",
        )
        self.step(C.SMFIC_HELO, C.SMFIP_NOHELO, C.SMFIP_NR_HELO, helo="client.example")

    def step(self, cmd: str, skip: int, noreply: int, **args: Any) -> None:
        """Send one step unless turned off; unless no-reply, it must be answered CONTINUE."""
        if self.protocol & skip:
            return
        self.conn._send(cmd, **args)
        self._answer(cmd, noreply)

    def raw(self, cmd: bytes, data: bytes, skip: int, noreply: int) -> None:
        if self.protocol & skip:
            return
        self.sock.sendall(struct.pack("!L", len(data) + 1) + cmd + data)
        self._answer(cmd.decode(), noreply)

    def _answer(self, cmd: str, noreply: int) -> None:
        if self.protocol & noreply:
            return
        reply = self.conn.recv()
        assert reply[0] == C.SMFIR_CONTINUE, (cmd, reply)

    def envelope(self, sender: str, rcpts: list[str]) -> None:
        self.conn.send_macro(C.SMFIC_MAIL, **{"{mail_addr}": sender.strip("<>")})
        self.step(C.SMFIC_MAIL, C.SMFIP_NOMAIL, C.SMFIP_NR_MAIL, args=[sender])
        for rcpt in rcpts:
            self.step(C.SMFIC_RCPT, C.SMFIP_NORCPT, C.SMFIP_NR_RCPT, args=[rcpt])
        if self.version >= 4:  # DATA exists from protocol 4 on
            self.conn.send_macro(C.SMFIC_DATA, i="4QUEUEID")
            self.step(C.SMFIC_DATA, C.SMFIP_NODATA, C.SMFIP_NR_DATA)

    def content(self, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        for name, value in headers:
            self.raw(b"L", name + b"\0" + value + b"\0", C.SMFIP_NOHDRS, C.SMFIP_NR_HDR)
        self.raw(b"N", b"", C.SMFIP_NOEOH, C.SMFIP_NR_EOH)
        for start in range(0, len(body), 65535):
            self.raw(b"B", body[start : start + 65535], C.SMFIP_NOBODY, C.SMFIP_NR_BODY)

    def message(
        self,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"hello\r\n",
        *,
        sender: str = "<sender@outside.test>",
        rcpts: list[str] | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """One whole message; the replies to end of message (the last one is final)."""
        self.envelope(sender, rcpts or ["<alice@example.test>"])
        self.content(headers, body)
        self.conn.send_macro(C.SMFIC_BODYEOB, i="4QUEUEID")
        return list(self.conn.send_eom())

    def abort(self) -> None:
        self.conn._send(C.SMFIC_ABORT)  # never answered

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn._send(C.SMFIC_QUIT)
        self.sock.close()


def deleted(replies: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, int]]:
    """(name, index) of every header deletion, in the order sent."""
    return [
        (args["name"], args["index"])
        for cmd, args in replies
        if cmd == C.SMFIR_CHGHEADER and args["value"] == ""
    ]


def added(replies: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    return {args["name"]: args["value"] for cmd, args in replies if cmd == C.SMFIR_ADDHEADER}


def plain(subject: bytes = b"hi") -> list[tuple[bytes, bytes]]:
    return [
        (b"From", b"sender@outside.test"),
        (b"To", b"alice@example.test"),
        (b"Subject", subject),
    ]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    path = servers.make_workdir("mw-miltertest-")
    yield path
    if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def db(base: Path) -> tuple[str, Path]:
    url, cfg = init_db(base, "mt")
    cli(cfg, "spam", "allow", "alice@example.test", "friend@outside.test")
    return url, cfg


@pytest.fixture(scope="module", params=["inet", "unix"])
def milter(
    request: pytest.FixtureRequest, base: Path, db: tuple[str, Path]
) -> Iterator[MilterProcess]:
    kind = request.param
    listen = (
        f"inet:{servers.free_port()}@127.0.0.1" if kind == "inet" else f"unix:{base}/{kind}.sock"
    )
    cfg = write_milter_config(base / f"{kind}.toml", db[0], base / "vmail", clamd="", spamd="")
    proc = MilterProcess(
        cfg, base / f"{kind}-tmp", listen, 0, servers.free_port(), base / f"{kind}.log"
    )
    proc.start()
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log_text()


@pytest.fixture(params=[6, 2], ids=["protocol6", "protocol2"])
def mta(request: pytest.FixtureRequest, milter: MilterProcess) -> Iterator[MTA]:
    conn = MTA(milter.listen, request.param)
    yield conn
    conn.close()


# --------------------------------------------------------------------------- tests


def test_negotiates_only_what_it_uses(mta: MTA) -> None:
    unix = mta.listen.startswith("unix:")
    assert mta.actions == ACTIONS
    assert mta.protocol & C.SMFIP_NOHELO
    assert not mta.protocol & (C.SMFIP_NOHDRS | C.SMFIP_NOBODY)
    assert not mta.protocol & (C.SMFIP_NOCONNECT | C.SMFIP_NOMAIL | C.SMFIP_NORCPT)
    # end of headers: skipped on a unix socket; on TCP sent (DATA is answered there)
    assert bool(mta.protocol & C.SMFIP_NOEOH) == unix
    if mta.version == 6:
        for bit in ("NR_CONN", "NR_MAIL", "NR_RCPT", "NR_HDR", "NR_BODY", "NOUNKNOWN"):
            assert mta.protocol & getattr(C, "SMFIP_" + bit), bit
        assert not mta.protocol & (C.SMFIP_RCPT_REJ | C.SMFIP_HDR_LEADSPC | C.SMFIP_NR_DATA)
        if unix:  # no Nagle, no delayed ACK: one round trip per message
            assert mta.protocol & C.SMFIP_NODATA
        else:  # DATA sent and answered: the reply is what keeps TCP from stalling
            assert not mta.protocol & C.SMFIP_NODATA
            assert mta.protocol & C.SMFIP_NR_EOH


def test_clean_message(mta: MTA) -> None:
    replies = mta.message(plain(b"clean"))
    assert replies[-1][0] == C.SMFIR_CONTINUE
    assert added(replies)["X-Spam-Status"].startswith("unscanned")
    assert deleted(replies) == []


def test_message_without_any_header(mta: MTA) -> None:
    """DATA answered, then straight to the body: libmilter needs EOH for this."""
    assert mta.message([], b"no headers at all\r\n")[-1][0] == C.SMFIR_CONTINUE
    assert mta.message([], b"")[-1][0] == C.SMFIR_CONTINUE
    assert mta.message(plain(b"after"))[-1][0] == C.SMFIR_CONTINUE


def test_forged_headers_are_deleted(mta: MTA) -> None:
    forged = [
        (b"X-Mailwarden-Allowed", b"yes"),  # on top, but the allow lists say no
        *plain(b"forged"),
        (b"X-Spam-Flag", b"NO"),
        (b"X-Mailwarden-Spam", b"no"),
        (b"x-spam-score", b"-100"),
        (b"X-MAILWARDEN-SPAM", b"no"),
        (b"X-Mailwarden-Allowed", b"yes"),
        (b"X-Virus-Scanned", b"forged"),
    ]
    replies = mta.message(forged)
    assert replies[-1][0] == C.SMFIR_CONTINUE
    gone = deleted(replies)
    assert sorted(gone) == [
        ("X-Mailwarden-Allowed", 1),
        ("X-Mailwarden-Allowed", 2),
        ("X-Mailwarden-Spam", 1),
        ("X-Mailwarden-Spam", 2),
        ("X-Spam-Flag", 1),
        ("X-Spam-Score", 1),
        ("X-Virus-Scanned", 1),
    ]
    # the last occurrence goes first, so the indexes stay valid
    assert [i for n, i in gone if n == "X-Mailwarden-Spam"] == [2, 1]


def test_topmost_allowed_header_stays_when_true(mta: MTA) -> None:
    headers = [(b"X-Mailwarden-Allowed", b"yes"), *plain(b"friend")]
    headers.append((b"X-Mailwarden-Allowed", b"yes"))  # a second copy is always forged
    replies = mta.message(headers, sender="<friend@outside.test>")
    assert deleted(replies) == [("X-Mailwarden-Allowed", 2)]
    # not on top: forged even for an allow-listed sender
    replies = mta.message(
        [*plain(b"friend 2"), (b"X-Mailwarden-Allowed", b"yes")], sender="<friend@outside.test>"
    )
    assert deleted(replies) == [("X-Mailwarden-Allowed", 1)]


def test_abort_mid_message_then_next_message(mta: MTA, milter: MilterProcess) -> None:
    mta.envelope("<sender@outside.test>", ["<alice@example.test>"])
    mta.content(plain(b"aborted"), b"")
    for _ in range(3):
        mta.raw(b"B", b"x" * 60_000, C.SMFIP_NOBODY, C.SMFIP_NR_BODY)
    mta.abort()
    replies = mta.message([*plain(b"after abort"), (b"X-Spam-Flag", b"NO")])
    assert replies[-1][0] == C.SMFIR_CONTINUE
    assert deleted(replies) == [("X-Spam-Flag", 1)]
    assert list(milter.tmpdir.iterdir()) == []


def test_hundred_recipients(mta: MTA, milter: MilterProcess) -> None:
    rcpts = [f"<user{i}@example.test>" for i in range(100)]
    replies = mta.message(plain(b"many"), rcpts=rcpts, sender="<many@outside.test>")
    assert replies[-1][0] == C.SMFIR_CONTINUE
    assert "from=<many@outside.test> rcpts=100 " in milter.log_text()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Gr\u00fc\u00dfe \u2603".encode(), id="utf8"),
        pytest.param(b"caf\xe9 latin-1 \xff\xfe", id="invalid-utf8"),
    ],
)
def test_eight_bit_headers(mta: MTA, value: bytes) -> None:
    headers = [*plain(value), (b"X-Mailwarden-Spam", value), (b"X-8bit", value)]
    replies = mta.message(headers, "K\u00e4se\r\n".encode())
    assert replies[-1][0] == C.SMFIR_CONTINUE
    assert deleted(replies) == [("X-Mailwarden-Spam", 1)]
