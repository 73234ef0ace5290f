"""Sans-IO codec for Postfix SMTP access policy delegation (and its Exim variant).

Wire format (REFERENCE §1.1, Postfix SMTPD_POLICY_README): the client sends ``name=value``
lines ended by LF, a request ends with an empty line; the server answers exactly one
``action=<access(5) action>`` line and an empty line, and keeps the connection for the
next request. Exim's ``${readsocket}`` sends the same attributes with
``request=exim_access_policy`` (so one listener serves both) and reads one reply line
until EOF: ``ok``, ``defer <code> <dsn> <text>`` or ``deny <code> <dsn> <text>``.

``Decoder.feed(bytes)`` returns the complete requests found so far; it never touches a
socket. A malformed request raises ``ProtocolError``: the protocol says the server must
not answer it, only log and close the connection. Malformed means: a line over
``MAX_LINE`` bytes, more than ``MAX_ATTRIBUTES`` lines in one request, bytes that are not
UTF-8, a NUL, a line without ``=``, an empty name, or a request whose ``request=`` is
missing or unknown. Unknown attribute names are ignored (kept, unused); for a duplicate
name the first value wins.

``encode(verdict, ...)`` is the one place a ``Verdict`` becomes policy text (DESIGN §4):
2.x -> ``DUNNO`` (or ``OK`` where the caller grants a permit, or ``PREPEND`` of the
verdict's header at DATA), 4.3.0 -> ``DEFER_IF_PERMIT 4.3.0 ...``, anything else
``<code> <dsn> <text>``.

Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mailwarden.policyd.exim import EXIM, exim_line
from mailwarden.verdict import Verdict

MAX_LINE = 8192  # Postfix caps attribute values well below this (ccert_* are longest)
MAX_ATTRIBUTES = 200  # Postfix 3.7 sends about 30
POSTFIX = "smtpd_access_policy"
REQUEST_KINDS = (POSTFIX, EXIM)


class ProtocolError(Exception):
    """The peer sent something that is not a policy request; close without replying."""


@dataclass(frozen=True, slots=True)
class Request:
    """One decoded request. Missing attributes read as ``""`` (or 0 for numbers)."""

    attrs: Mapping[str, str]

    def get(self, name: str) -> str:
        return self.attrs.get(name, "")

    def number(self, name: str) -> int:
        value = self.attrs.get(name, "")
        return int(value) if value.isdigit() and len(value) < 19 else 0

    @property
    def exim(self) -> bool:
        return self.attrs.get("request") == EXIM

    @property
    def state(self) -> str:
        return self.get("protocol_state").upper()

    @property
    def instance(self) -> str:
        return self.get("instance")

    @property
    def context(self) -> str:
        return self.get("policy_context").lower()

    @property
    def sender(self) -> str:
        return self.get("sender")

    @property
    def recipient(self) -> str:
        return self.get("recipient")

    @property
    def client_address(self) -> str:
        return self.get("client_address")

    @property
    def login(self) -> str:
        return self.get("sasl_username")

    @property
    def size(self) -> int:
        return self.number("size")

    @property
    def recipient_count(self) -> int:
        return self.number("recipient_count")


class Decoder:
    """Incremental parser: bytes in, requests out."""

    def __init__(self, max_line: int = MAX_LINE, max_attributes: int = MAX_ATTRIBUTES) -> None:
        self._buf = bytearray()
        self._attrs: dict[str, str] = {}
        self._lines = 0
        self._max_line = max_line
        self._max_attributes = max_attributes

    @property
    def pending(self) -> bool:
        """True while part of a request has been received (a stalled client)."""
        return bool(self._buf) or self._lines > 0

    def feed(self, data: bytes) -> list[Request]:
        self._buf += data
        out: list[Request] = []
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end < 0:
                break
            request = self._line(bytes(self._buf[start:end]))
            if request is not None:
                out.append(request)
            start = end + 1
        del self._buf[:start]
        if len(self._buf) > self._max_line:
            raise ProtocolError(f"line longer than {self._max_line} bytes")
        return out

    def _line(self, raw: bytes) -> Request | None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self._max_line:
            raise ProtocolError(f"line longer than {self._max_line} bytes")
        if not raw:
            return self._finish()
        self._lines += 1
        if self._lines > self._max_attributes:
            raise ProtocolError(f"more than {self._max_attributes} attributes")
        if b"\0" in raw:
            raise ProtocolError("NUL byte in request")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("request is not valid UTF-8") from None
        name, eq, value = line.partition("=")
        if not eq or not name:
            raise ProtocolError("attribute line without name=value")
        self._attrs.setdefault(name, value)
        return None

    def _finish(self) -> Request:
        attrs, self._attrs, self._lines = self._attrs, {}, 0
        kind = attrs.get("request")
        if kind is None:
            raise ProtocolError("request without request= attribute")
        if kind not in REQUEST_KINDS:
            raise ProtocolError("unknown request type")
        return Request(attrs)


def action(verdict: Verdict, *, state: str = "RCPT", permit: bool = False) -> str:
    """The access(5) action for ``verdict`` (without ``action=``)."""
    if verdict.ok:
        if verdict.headers and state == "DATA":  # PREPEND is refused at END-OF-MESSAGE
            name, value = verdict.headers[0]
            return f"PREPEND {name}: {value}"
        return "OK" if permit else "DUNNO"
    if verdict.dsn == "4.3.0":
        return f"DEFER_IF_PERMIT 4.3.0 {verdict.text}".rstrip()
    return f"{verdict.smtp_code} {verdict.dsn} {verdict.text}".rstrip()


def encode(verdict: Verdict, request: Request | None = None, *, permit: bool = False) -> bytes:
    """The complete reply for ``request`` (Postfix framing, or one Exim line)."""
    if request is not None and request.exim:
        return (exim_line(verdict) + "\n").encode()
    state = request.state if request is not None else "RCPT"
    return ("action=" + action(verdict, state=state, permit=permit) + "\n\n").encode()
