"""Sans-IO codec for the server side of LMTP (RFC 2033): bytes in, events out.

``Session.receive(bytes)`` buffers what the client sent; ``Session.next_event()`` returns
the next thing to do, one at a time, or None when more bytes are needed:

    ``Reply``    protocol text the codec decided alone (LHLO, MAIL, RSET, NOOP, HELP,
                 errors, the 354 for DATA); write it (``close``: then close the connection)
    ``Rcpt``     a recipient to check: answer with ``answer_rcpt(verdict)``
    ``Message``  a complete message: answer with ``answer_message(verdicts)``, one
                 ``Verdict`` per accepted recipient, in RCPT order (RFC 2033 §4.2)

While a ``Rcpt`` or ``Message`` is unanswered, ``next_event`` returns None: replies
leave in command order however far the client pipelined (RFC 2920). Nothing here
touches a socket, a clock or a log.

Rules (what lmtpd answered before, with aiosmtpd, unless noted):
    LHLO      required first (503 5.5.1); advertises PIPELINING, ENHANCEDSTATUSCODES,
              8BITMIME, SMTPUTF8 and SIZE; resets the transaction. HELO/EHLO are not
              LMTP (500). BDAT/CHUNKING is not offered (502).
    MAIL      ``FROM:<addr>`` plus BODY=7BIT|8BITMIME, SMTPUTF8, SIZE=n (552 5.3.4 when
              over the limit); 555 5.5.4 for other parameters; 503 when nested.
    RCPT      ``TO:<addr>`` after MAIL (503); the recipient's verdict is the reply; at
              most ``MAX_RECIPIENTS`` accepted (452 4.5.3).
    DATA      after an accepted RCPT (503); 354, then the message up to CRLF.CRLF with
              leading dots removed (RFC 5321 §4.5.2) and CRLF turned into LF (what
              Postfix and Dovecot store), written as it arrives into a ``delivery.body.Body``:
              in memory up to ``spool_threshold`` bytes, then in an unnamed temp file,
              so a large message never sits whole in memory. A spool write error (disk
              full) raises: the adapter answers 421 4.3.0. A message over ``max_size`` is
              read to its end but not kept, and every recipient gets 552 5.3.4 (one reply
              per recipient: a single reply would desynchronise the client).
    RSET/NOOP 250; QUIT 221 and close; VRFY/EXPN 502 (mailbox existence is not told).
    lines     a command line over ``max_line`` bytes answers 500 5.5.2 and is skipped;
              a line that is not UTF-8 answers 500 5.5.2; lines end in CRLF or LF.
    replies   what the client sent (an address, a verb) is echoed as printable ASCII only:
              any other byte is written ``\\xNN`` (a NUL or TAB in an address must not
              reach the client's logs raw).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.delivery.body import DEFAULT_THRESHOLD, Body
from mailwarden.verdict import Verdict

MAX_LINE = 1 << 16  # Postfix folds at 998 octets; longer lines from other clients too
MAX_RECIPIENTS = 1000
_GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>\r\n"


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes
    close: bool = False


@dataclass(frozen=True, slots=True)
class Rcpt:
    address: str


@dataclass(frozen=True, slots=True)
class Message:
    sender: str
    recipients: tuple[str, ...]
    body: Body  # unstuffed, LF line ends, ending with LF (or empty); close() when done
    too_big: bool = False

    @property
    def data(self) -> bytes:
        """The whole message in memory (tests)."""
        return self.body.getvalue()


Event = Reply | Rcpt | Message


def printable(text: str) -> str:
    """``text`` as printable ASCII: every other byte of its UTF-8 form as ``\\xNN``."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in text.encode("utf-8", "surrogatepass")
    )


def encode(verdict: Verdict, recipient: str) -> str:
    """One LMTP reply line for a recipient: ``250 2.0.0 <rcpt> Delivered`` (printable)."""
    shown = f"<{printable(recipient)}>"
    as_verdict_wrote_it = "".join(c if " " <= c <= "~" else "?" for c in f"<{recipient}>")
    if as_verdict_wrote_it in verdict.text:
        text = verdict.text.replace(as_verdict_wrote_it, shown, 1)
    else:
        text = f"{shown} {verdict.text}"
    return printable(f"{verdict.smtp_code} {verdict.dsn} {text}")


def _line(text: str) -> Reply:
    return Reply(printable(text).encode() + b"\r\n")


def parse_path(arg: str) -> tuple[str, str] | None:
    """``<addr> params`` -> (addr, params); None for a syntax error. A quoted local part
    may contain ``>``; a source route (``<@a,@b:x@y>``) is dropped (RFC 5321 §4.1.2);
    a bare address without brackets is tolerated."""
    arg = arg.lstrip(" ")
    if not arg.startswith("<"):
        addr, _, rest = arg.partition(" ")
        return (addr, rest.strip()) if addr and "<" not in addr and ">" not in addr else None
    quoted, i = False, 1
    while i < len(arg):
        ch = arg[i]
        if ch == "\\" and quoted:
            i += 1
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            break
        i += 1
    else:
        return None
    addr, rest = arg[1:i], arg[i + 1 :]
    if rest and rest[0] not in " \t":
        return None
    if addr.startswith("@"):
        _route, colon, addr = addr.partition(":")
        if not colon:
            return None
    return addr, rest.strip()


class Session:
    """The state of one LMTP connection (see the module doc)."""

    def __init__(
        self,
        hostname: str,
        max_size: int,
        max_line: int = MAX_LINE,
        *,
        spool_threshold: int = DEFAULT_THRESHOLD,
        spool_dir: str | None = None,
    ) -> None:
        self.hostname = hostname
        self.max_size = max_size
        self.max_line = max_line
        self.spool_threshold = spool_threshold
        self.spool_dir = spool_dir
        self._buf = bytearray()
        self._lhlo = False
        self._sender: str | None = None
        self._rcpts: list[str] = []
        self._asked: Rcpt | Message | None = None  # the event awaiting its answer
        self._in_data = False
        self._skipping = False  # discarding the rest of an over-long command line
        self._body: Body | None = None
        self._body_size = 0  # bytes of DATA read from the wire
        self._bol = True  # the next DATA byte starts a line
        self._closed = False

    def greeting(self) -> bytes:
        return f"220 {self.hostname} LMTP mailwarden lmtpd\r\n".encode()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def busy(self) -> bool:
        """True while a message is being received or answered (shutdown waits for it)."""
        return self._in_data or isinstance(self._asked, Message)

    def receive(self, data: bytes) -> None:
        self._buf += data

    def close(self) -> None:
        """Release a message being received (its spool file); the connection is gone."""
        if self._body is not None:
            self._body.close()
            self._body = None

    def next_event(self) -> Event | None:
        if self._asked is not None or self._closed:
            return None
        if self._in_data:
            return self._data()
        end = self._buf.find(b"\n")
        if end < 0:
            if self._skipping:
                del self._buf[:]
            elif len(self._buf) > self.max_line:
                del self._buf[:]
                self._skipping = True
                return _line("500 5.5.2 Line too long")
            return None
        raw = bytes(self._buf[:end])
        del self._buf[: end + 1]
        if self._skipping:
            self._skipping = False
            return self.next_event()
        if len(raw) > self.max_line:
            return _line("500 5.5.2 Line too long")
        try:
            line = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            return _line("500 5.5.2 Error: command line is not UTF-8")
        return self._command(line)

    # --- answers from the adapter ----------------------------------------------------

    def answer_rcpt(self, verdict: Verdict) -> bytes:
        asked = self._asked
        if not isinstance(asked, Rcpt):
            raise RuntimeError("no RCPT awaits an answer")
        self._asked = None
        if not verdict.ok:
            return encode(verdict, asked.address).encode() + b"\r\n"
        self._rcpts.append(asked.address)
        return f"250 2.1.5 <{printable(asked.address)}> Ok\r\n".encode()

    def answer_message(self, verdicts: list[Verdict]) -> bytes:
        asked = self._asked
        if not isinstance(asked, Message):
            raise RuntimeError("no message awaits an answer")
        if len(verdicts) != len(asked.recipients):
            raise ValueError("one verdict per accepted recipient")
        self._asked = None
        lines = [encode(v, r) for v, r in zip(verdicts, asked.recipients, strict=True)]
        return ("\r\n".join(lines) + "\r\n").encode()

    # --- commands --------------------------------------------------------------------

    def _command(self, line: str) -> Event:
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        arg = arg.strip()
        if verb == "RCPT":
            return self._rcpt(arg)
        if verb == "MAIL":
            return self._mail(arg)
        if verb == "DATA":
            return self._start_data(arg)
        if verb == "LHLO":
            return self._lhlo_cmd(arg)
        if verb in ("RSET", "NOOP", "QUIT"):
            if arg and verb != "NOOP":
                return _line(f"501 5.5.4 Syntax: {verb}")
            if verb == "RSET":
                self._reset()
            if verb == "QUIT":
                self._closed = True
                return Reply(b"221 2.0.0 Bye\r\n", close=True)
            return Reply(b"250 2.0.0 OK\r\n")
        if verb in ("VRFY", "EXPN"):
            return _line(f"502 5.5.1 {verb} command is disabled")
        if verb == "HELP":
            return _line("214 2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT")
        if verb in ("HELO", "EHLO"):
            return _line(f"500 5.5.1 Error: {verb} is not LMTP, send LHLO")
        if verb == "BDAT":
            return _line("502 5.5.1 Error: BDAT is not offered")
        if not verb:
            return _line("500 5.5.2 Error: bad syntax")
        return _line(f'500 5.5.2 Error: command "{verb[:20]}" not recognized')

    def _reset(self) -> None:
        self._sender = None
        self._rcpts = []

    def _lhlo_cmd(self, arg: str) -> Reply:
        if not arg:
            return _line("501 5.5.4 Syntax: LHLO hostname")
        self._lhlo = True
        self._reset()
        lines = [
            self.hostname,
            "PIPELINING",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "SMTPUTF8",
            f"SIZE {self.max_size}",
            "HELP",
        ]
        text = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
        return Reply(text.encode())

    def _mail(self, arg: str) -> Reply:
        if not self._lhlo:
            return _line("503 5.5.1 Error: send LHLO first")
        if self._sender is not None:
            return _line("503 5.5.1 Error: nested MAIL command")
        path = parse_path(arg[5:]) if arg[:5].upper() == "FROM:" else None
        if path is None:
            return _line("501 5.5.4 Syntax: MAIL FROM:<address>")
        for param in path[1].split():
            key, _, value = param.partition("=")
            key = key.upper()
            if key == "SIZE" and value.isdigit():
                if int(value) > self.max_size:
                    return _line("552 5.3.4 Message size exceeds fixed maximum message size")
            elif not (
                (key == "BODY" and value.upper() in ("7BIT", "8BITMIME"))
                or (key == "SMTPUTF8" and not value)
            ):
                return _line("555 5.5.4 MAIL FROM parameters not recognized or not implemented")
        self._sender = path[0]
        return Reply(b"250 2.1.0 Ok\r\n")

    def _rcpt(self, arg: str) -> Event:
        if self._sender is None:
            return _line("503 5.5.1 Error: need MAIL command")
        path = parse_path(arg[3:]) if arg[:3].upper() == "TO:" else None
        if path is None or not path[0]:
            return _line("501 5.5.4 Syntax: RCPT TO:<address>")
        if path[1]:
            return _line("555 5.5.4 RCPT TO parameters not recognized or not implemented")
        if len(self._rcpts) >= MAX_RECIPIENTS:
            return _line("452 4.5.3 Error: too many recipients")
        self._asked = Rcpt(path[0])
        return self._asked

    def _start_data(self, arg: str) -> Reply:
        if self._sender is None:
            return _line("503 5.5.1 Error: need MAIL command")
        if not self._rcpts:
            return _line("503 5.5.1 Error: need RCPT command")
        if arg:
            return _line("501 5.5.4 Syntax: DATA")
        self._in_data = True
        self.close()
        self._body = Body(self.spool_threshold, self.spool_dir)
        self._body_size = 0
        self._bol = True
        return Reply(_GO_AHEAD)

    # --- DATA ------------------------------------------------------------------------

    def _data(self) -> Message | None:
        buf = self._buf
        if self._bol and buf.startswith(b".\r\n"):
            end = 0  # the terminator right after a line end (or an empty message)
        else:
            found = buf.find(b"\r\n.\r\n")
            if found < 0:
                cut = buf.rfind(b"\r\n")
                if cut >= 0:
                    self._take(cut + 2)  # whole lines; what follows may begin the terminator
                elif len(buf) > self.max_line:
                    self._take(len(buf) - 1)  # a very long line: keep a possible CR
                return None
            end = found + 2  # the message keeps the CRLF of its last line
        self._take(end)
        del self._buf[:3]  # the ".\r\n" that ends the message
        return self._finish()

    def _take(self, n: int) -> None:
        """Move the first ``n`` buffered bytes into the message: whole lines, or part of
        one line with no CRLF in it, so no CRLF and no line start is ever cut."""
        if n <= 0:
            return
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        self._body_size += n
        if self._body_size > self.max_size:
            self.close()  # over the limit: read on, keep nothing
        elif self._body is not None:
            # One leading dot per line goes (RFC 5321 §4.5.2); then CRLF -> LF.
            if self._bol and chunk[:1] == b".":
                chunk = chunk[1:]
            self._body.write(chunk.replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n"))
        self._bol = chunk.endswith(b"\r\n")

    def _finish(self) -> Message:
        self._in_data = False
        too_big = self._body_size > self.max_size
        body = self._body if self._body is not None and not too_big else Body.of(b"")
        self._body = None
        msg = Message(self._sender or "", tuple(self._rcpts), body, too_big)
        self._reset()
        self._asked = msg
        return msg
