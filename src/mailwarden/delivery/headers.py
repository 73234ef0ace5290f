"""Read the header block of a raw message without rewriting it.

What it does
    ``parse`` splits raw bytes (LF or CRLF line ends) into the header block and the body
    offset, and returns unfolded ``(name, value)`` pairs, decoded as UTF-8 with
    replacement (RFC 6532 allows UTF-8 headers; anything else only needs to compare).
    ``addresses`` pulls the ``addr-spec`` parts out of To/Cc-style values.

Tolerance
    A message without a header/body separator is all header (or, when its first line is
    no header, all body); a line that is neither a header nor a continuation ends the
    header block, as Postfix's cleanup would treat it. At most ``MAX_HEADER_BYTES`` are
    examined, so a huge header block cannot make the delivery agent slow or large.

Pure: no I/O, no mutable module state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEADER_BYTES = 1024 * 1024
_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
# Only vacation needs it: compiled on first use (re's cache), not at every LDA start-up.
_ADDR = r"<([^<>\s]+@[^<>\s]+)>|([^\s<>,;:\"()]+@[^\s<>,;:\"()]+)"


@dataclass(frozen=True, slots=True)
class Headers:
    fields: tuple[tuple[str, str], ...]  # (lower-case name, unfolded value)

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        key = name.lower()
        return next((v for n, v in self.fields if n == key), None)

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self.fields if n == key]

    def names(self) -> frozenset[str]:
        return frozenset(n for n, _ in self.fields)


def parse(raw: bytes) -> Headers:
    """The header fields at the start of ``raw`` (see the module doc for tolerance)."""
    fields: list[tuple[str, str]] = []
    current: list[bytes] | None = None
    name = b""
    for raw_line in raw[:MAX_HEADER_BYTES].split(b"\n"):
        line = raw_line.removesuffix(b"\r")
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line)
            continue
        if current is not None:
            fields.append(_field(name, current))
            current = None
        m = _NAME.match(line)
        if not m:
            break  # empty separator line, or a body line without separator
        name, current = m.group(1), [line[m.end() :]]
    if current is not None:
        fields.append(_field(name, current))
    return Headers(tuple(fields))


def _field(name: bytes, parts: list[bytes]) -> tuple[str, str]:
    value = b" ".join(p.strip() for p in parts).decode("utf-8", "replace")
    return name.decode("ascii", "replace").lower(), value.strip()


def addresses(values: list[str]) -> frozenset[str]:
    """Lower-case addresses found in address-list header values."""
    found: set[str] = set()
    for value in values:
        for m in re.finditer(_ADDR, value):
            found.add((m.group(1) or m.group(2)).lower())
    return frozenset(found)
