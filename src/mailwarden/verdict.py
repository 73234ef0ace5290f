"""Verdict: the one result type of every mailwarden decision.

A ``Verdict`` is an RFC 3463 enhanced status code plus a human text. The first digit
decides what happens to the mail: 2 = go on, 4 = the MTA keeps it and retries later,
5 = it is refused (bounced). Each adapter (policy ``action=``, milter reply, LDA exit
code, LMTP reply, Exim line) has one ``encode`` function that turns a Verdict into its
protocol; no adapter invents reply codes of its own.

Construction validates the status, so a malformed reply cannot be built.
Errors: ``ValueError`` for a status that is not ``class.subject.detail`` with class 2, 4 or 5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
# Text goes into SMTP replies and log lines: printable ASCII only, no CR/LF.
_UNSAFE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True, slots=True)
class Verdict:
    """An enhanced status (``"5.1.1"``) and a short explanation."""

    dsn: str
    text: str = ""
    # Basic SMTP code when the convention for this status is not enough (553 for send-as).
    code: int = 0
    # Optional facts for adapters (e.g. a header to prepend); never protocol text.
    headers: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not _STATUS.match(self.dsn):
            raise ValueError(f"invalid enhanced status code {self.dsn!r}")
        if self.code and str(self.code)[0] != self.dsn[0]:
            raise ValueError(f"SMTP code {self.code} does not match status {self.dsn}")
        object.__setattr__(self, "text", _UNSAFE.sub("?", self.text)[:400])

    @property
    def ok(self) -> bool:
        return self.dsn[0] == "2"

    @property
    def temporary(self) -> bool:
        return self.dsn[0] == "4"

    @property
    def permanent(self) -> bool:
        return self.dsn[0] == "5"

    @property
    def smtp_code(self) -> int:
        """The basic SMTP reply code conventionally paired with this status."""
        if self.code:
            return self.code
        return _SMTP_CODE.get(self.dsn, {"2": 250, "4": 451, "5": 550}[self.dsn[0]])


# Statuses whose conventional SMTP code is not the class default (RFC 3463, RFC 5321 §4.2).
_SMTP_CODE = {
    "4.2.2": 452,
    "5.2.2": 552,
    "5.3.4": 552,
    "4.7.1": 450,
    "5.7.1": 554,
    "4.3.0": 451,
    "5.4.6": 554,
    "4.5.3": 452,
}

OK = Verdict("2.0.0", "Ok")


def tempfail(text: str = "Temporary failure, try again later") -> Verdict:
    """The answer for anything unexpected: store down, timeout, bug (DSN 4.3.0)."""
    return Verdict("4.3.0", text)
