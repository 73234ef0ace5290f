"""Golden transcripts for lmtpd's sans-IO LMTP codec (``lda.lmtp_protocol``).

Each transcript: ``>>> `` lines are what the client sends (all pipelined in one write,
and again one byte at a time: the replies must not depend on how the bytes arrive),
``<<< `` lines the server's replies, in order. Recipients named ``unknown*`` are 5.1.1,
``full*`` 4.2.2, ``bad*`` fail delivery with 4.3.0; the rest are accepted and delivered.
"""

from __future__ import annotations

import pytest

from mailwarden.lmtpd.protocol import Message, Rcpt, Reply, Session, parse_path
from mailwarden.verdict import OK, Verdict

LHLO = """\
>>> LHLO client.test
<<< 250-mx.test
<<< 250-PIPELINING
<<< 250-ENHANCEDSTATUSCODES
<<< 250-8BITMIME
<<< 250-SMTPUTF8
<<< 250-SIZE 1000
<<< 250 HELP
"""

LONG_LINE = ">>> " + "y" * 600 + "\n"

TRANSCRIPTS = {
    "one reply per accepted recipient, in RCPT order": LHLO
    + """\
>>> MAIL FROM:<s@x.test> BODY=8BITMIME
<<< 250 2.1.0 Ok
>>> RCPT TO:<a@x.test>
<<< 250 2.1.5 <a@x.test> Ok
>>> RCPT TO:<unknown@x.test>
<<< 550 5.1.1 <unknown@x.test> User unknown
>>> RCPT TO:<full@x.test>
<<< 452 4.2.2 <full@x.test> Mailbox full
>>> RCPT TO:<bad@x.test>
<<< 250 2.1.5 <bad@x.test> Ok
>>> RCPT TO:<b@x.test>
<<< 250 2.1.5 <b@x.test> Ok
>>> DATA
<<< 354 End data with <CR><LF>.<CR><LF>
>>> Subject: t
>>>
>>> ..dot
>>> .
<<< 250 2.0.0 <a@x.test> Delivered
<<< 451 4.3.0 <bad@x.test> Temporary failure
<<< 250 2.0.0 <b@x.test> Delivered
>>> QUIT
<<< 221 2.0.0 Bye
""",
    "sequence errors: 503, and the session goes on": """\
>>> MAIL FROM:<s@x.test>
<<< 503 5.5.1 Error: send LHLO first
"""
    + LHLO
    + """\
>>> RCPT TO:<a@x.test>
<<< 503 5.5.1 Error: need MAIL command
>>> DATA
<<< 503 5.5.1 Error: need MAIL command
>>> MAIL FROM:<>
<<< 250 2.1.0 Ok
>>> MAIL FROM:<>
<<< 503 5.5.1 Error: nested MAIL command
>>> RCPT TO:<unknown@x.test>
<<< 550 5.1.1 <unknown@x.test> User unknown
>>> DATA
<<< 503 5.5.1 Error: need RCPT command
>>> RSET
<<< 250 2.0.0 OK
>>> RCPT TO:<a@x.test>
<<< 503 5.5.1 Error: need MAIL command
>>> NOOP
<<< 250 2.0.0 OK
""",
    "syntax errors: 500, 501, 502, 555": LHLO
    + """\
>>> HELO client.test
<<< 500 5.5.1 Error: HELO is not LMTP, send LHLO
>>> EHLO client.test
<<< 500 5.5.1 Error: EHLO is not LMTP, send LHLO
>>> LHLO
<<< 501 5.5.4 Syntax: LHLO hostname
>>> FOO bar
<<< 500 5.5.2 Error: command "FOO" not recognized
>>>
<<< 500 5.5.2 Error: bad syntax
>>> VRFY a@x.test
<<< 502 5.5.1 VRFY command is disabled
>>> EXPN list
<<< 502 5.5.1 EXPN command is disabled
>>> BDAT 10 LAST
<<< 502 5.5.1 Error: BDAT is not offered
>>> HELP
<<< 214 2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT
>>> MAIL TO:<s@x.test>
<<< 501 5.5.4 Syntax: MAIL FROM:<address>
>>> MAIL FROM:<s@x.test> AUTH=<>
<<< 555 5.5.4 MAIL FROM parameters not recognized or not implemented
>>> MAIL FROM:<s@x.test> SIZE=1001
<<< 552 5.3.4 Message size exceeds fixed maximum message size
>>> MAIL FROM:<s@x.test>junk
<<< 501 5.5.4 Syntax: MAIL FROM:<address>
>>> mail from: <ä@x.test> SIZE=1000 BODY=7BIT SMTPUTF8
<<< 250 2.1.0 Ok
>>> RCPT TO:<>
<<< 501 5.5.4 Syntax: RCPT TO:<address>
>>> RCPT TO:<a@x.test> NOTIFY=NEVER
<<< 555 5.5.4 RCPT TO parameters not recognized or not implemented
>>> rcpt to:<@relay.test:a@x.test>
<<< 250 2.1.5 <a@x.test> Ok
>>> DATA now
<<< 501 5.5.4 Syntax: DATA
>>> RSET x
<<< 501 5.5.4 Syntax: RSET
>>> QUIT
<<< 221 2.0.0 Bye
>>> NOOP
""",
    "a message over the size limit: 552 per recipient, nothing desynchronised": LHLO
    + """\
>>> MAIL FROM:<s@x.test>
<<< 250 2.1.0 Ok
>>> RCPT TO:<a@x.test>
<<< 250 2.1.5 <a@x.test> Ok
>>> RCPT TO:<b@x.test>
<<< 250 2.1.5 <b@x.test> Ok
>>> DATA
<<< 354 End data with <CR><LF>.<CR><LF>
"""
    + LONG_LINE * 2
    + """\
>>> .
<<< 552 5.3.4 <a@x.test> Message too big for system
<<< 552 5.3.4 <b@x.test> Message too big for system
>>> MAIL FROM:<s@x.test>
<<< 250 2.1.0 Ok
>>> RCPT TO:<a@x.test>
<<< 250 2.1.5 <a@x.test> Ok
>>> DATA
<<< 354 End data with <CR><LF>.<CR><LF>
>>> .
<<< 250 2.0.0 <a@x.test> Delivered
""",
}


TRANSCRIPTS["replies echo printable ASCII only (NUL, TAB, 8-bit as \\xNN)"] = (
    LHLO
    + """\
>>> MAIL FROM:<s@x.test>
<<< 250 2.1.0 Ok
>>> RCPT TO:<unknown\x00nul@x.test>
<<< 550 5.1.1 <unknown\\x00nul@x.test> User unknown
>>> RCPT TO:<unknown\ttab@x.test>
<<< 550 5.1.1 <unknown\\x09tab@x.test> User unknown
>>> RCPT TO:<full\x1b[31m@x.test>
<<< 452 4.2.2 <full\\x1b[31m@x.test> Mailbox full
>>> RCPT TO:<jörg\x7f@x.test>
<<< 250 2.1.5 <j\\xc3\\xb6rg\\x7f@x.test> Ok
>>> FOO\x00\tbar
<<< 500 5.5.2 Error: command "FOO\\x00\\x09BAR" not recognized
"""
)


def _parse(text: str) -> tuple[bytes, list[str]]:
    sent, expected = [], []
    for line in text.splitlines():
        if line.startswith(">>>"):
            sent.append(line[4:] + "\r\n")
        elif line.startswith("<<< "):
            expected.append(line[4:])
    return "".join(sent).encode(), expected


def _verdict(address: str) -> Verdict:
    if address.startswith("unknown"):
        return Verdict("5.1.1", f"<{address}> User unknown")
    if address.startswith("full"):
        return Verdict("4.2.2", "Mailbox full")
    return OK


def run(chunks: list[bytes], max_size: int = 1000) -> tuple[list[str], list[Message]]:
    """Drive a Session like lmtpd's adapter does; all replies, and the messages."""
    session = Session("mx.test", max_size)
    out = bytearray()
    messages: list[Message] = []
    for chunk in chunks:
        session.receive(chunk)
        while (event := session.next_event()) is not None:
            if isinstance(event, Reply):
                out += event.data
            elif isinstance(event, Rcpt):
                out += session.answer_rcpt(_verdict(event.address))
            else:
                messages.append(event)
                verdicts = [
                    Verdict("5.3.4", "Message too big for system")
                    if event.too_big
                    else Verdict("4.3.0", "Temporary failure")
                    if r.startswith("bad")
                    else Verdict("2.0.0", "Delivered")
                    for r in event.recipients
                ]
                out += session.answer_message(verdicts)
    assert out.endswith(b"\r\n") or not out
    return out.decode().split("\r\n")[:-1], messages


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
def test_transcript(name: str) -> None:
    wire, expected = _parse(TRANSCRIPTS[name])
    assert run([wire])[0] == expected
    assert run([wire[i : i + 1] for i in range(len(wire))])[0] == expected


def test_message_bytes_unstuffed_whatever_the_chunks() -> None:
    body = b"Subject: t\r\n\r\n..one\r\n..\r\nend .\r\n.x\r\n"
    wire = b"LHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n" + body + b".\r\n"
    want = b"Subject: t\n\n.one\n.\nend .\nx\n"  # unstuffed, CRLF -> LF
    for size in (1, 2, 3, 4, 5, 7, len(wire)):
        _, messages = run([wire[i : i + size] for i in range(0, len(wire), size)])
        assert [(m.sender, m.recipients, m.data) for m in messages] == [("s@x", ("a@x",), want)]


def test_message_starting_with_dot_and_empty_message() -> None:
    head = b"LHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n"
    assert run([head + b"..a\r\n.\r\n"])[1][0].data == b".a\n"
    assert run([head + b".\r\n"])[1][0].data == b""
    assert run([head + b"\r\n.\r\n"])[1][0].data == b"\n"


def test_message_exactly_at_the_limit_is_kept() -> None:
    head = b"LHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n"
    body = b"z" * 998 + b"\r\n"  # 1000 bytes
    assert run([head + body + b".\r\n"])[1][0].data == b"z" * 998 + b"\n"
    assert run([head + b"z" + body + b".\r\n"])[1][0].too_big


def test_over_long_command_line_is_skipped() -> None:
    replies, _ = run([b"LHLO c\r\n" + b"N" * 300, b"O" * 300, b"\r\nNOOP\r\n"], 1000)
    session = Session("mx.test", 1000, max_line=256)
    session.receive(b"NOOP " + b"x" * 300)
    first = session.next_event()
    session.receive(b"more\r\nNOOP\r\n")
    assert first == Reply(b"500 5.5.2 Line too long\r\n")
    assert session.next_event() == Reply(b"250 2.0.0 OK\r\n")
    assert session.next_event() is None
    assert replies[-2:] == ['500 5.5.2 Error: command "NNNN' + "N" * 16 + '" not recognized',
                            "250 2.0.0 OK"]  # fmt: skip


def test_long_lines_and_dots_across_reads() -> None:
    """A line longer than max_line arrives in pieces; a dot only goes at a line start."""
    head = b"LHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n"
    body = b"." + b"a" * 5000 + b"\r\r\n..b" + b"." * 3000 + b"\r\n\r\n..\r\n"
    wire = head + body + b".\r\n"
    want = b"a" * 5000 + b"\r\n.b" + b"." * 3000 + b"\n\n.\n"
    for size in (1, 3, 700, 4096, len(wire)):
        session = Session("mx.test", 1 << 20, max_line=256)
        msgs = []
        for i in range(0, len(wire), size):
            session.receive(wire[i : i + size])
            while (event := session.next_event()) is not None:
                if isinstance(event, Rcpt):
                    session.answer_rcpt(OK)
                elif isinstance(event, Message):
                    msgs.append(event)
            assert session.buffered <= max(size, 256) + 8  # whole message never buffered
        assert [m.data for m in msgs] == [want], size
        assert msgs[0].body.vsize == len(want) + want.count(b"\n") - want.count(b"\r\n")


def test_large_message_is_spooled_to_a_file() -> None:
    session = Session("mx.test", 1 << 24, spool_threshold=1000)
    session.receive(b"LHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n")
    while not isinstance(session.next_event(), Rcpt):
        pass
    session.answer_rcpt(OK)
    assert session.next_event() == Reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
    line = b"x" * 98 + b"\r\n"
    for _ in range(100):
        session.receive(line * 10)
        assert session.next_event() is None
    session.receive(b".\r\n")
    msg = session.next_event()
    assert isinstance(msg, Message) and msg.body.on_disk
    assert msg.body.size == 100 * 10 * 99
    assert b"".join(msg.body.chunks(4096)) == b"x" * 98 + b"\n" + msg.data[99:]
    assert msg.data == (b"x" * 98 + b"\n") * 1000
    msg.body.close()


def test_command_not_utf8() -> None:
    assert run([b"LHLO \xff\r\n"])[0] == ["500 5.5.2 Error: command line is not UTF-8"]


def test_no_event_while_an_answer_is_pending() -> None:
    session = Session("mx.test", 1000)
    session.receive(b"LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n")
    assert isinstance(session.next_event(), Reply)
    assert isinstance(session.next_event(), Reply)
    assert session.next_event() == Rcpt("a@x")
    assert session.next_event() is None  # the second RCPT waits for the first's answer
    assert session.answer_rcpt(OK) == b"250 2.1.5 <a@x> Ok\r\n"
    assert session.next_event() == Rcpt("b@x")
    with pytest.raises(RuntimeError):
        session.answer_message([OK])


@pytest.mark.parametrize(
    ("arg", "want"),
    [
        ("<a@b.c>", ("a@b.c", "")),
        ("<a@b.c> BODY=8BITMIME", ("a@b.c", "BODY=8BITMIME")),
        ("<>", ("", "")),
        ('<"x>y"@b.c>', ('"x>y"@b.c', "")),
        ("<@r1,@r2:a@b.c>", ("a@b.c", "")),
        ("a@b.c", ("a@b.c", "")),
        ("a@b.c X=1", ("a@b.c", "X=1")),
        ("<a@b.c", None),
        ("<a@b.c>x", None),
        ("<@r1a@b.c>", None),
        ("", None),
    ],
)
def test_parse_path(arg: str, want: tuple[str, str] | None) -> None:
    assert parse_path(arg) == want
