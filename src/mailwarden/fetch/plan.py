"""Pure decisions of the mail fetcher: no sockets, no database, no clock.

Who calls it: ``fetch.run`` (one account's run) and the unit tests (tests/unit/test_fetch_plan.py).

What is decided here:

- ``to_fetch``: the listed messages not seen before (POP3 by UIDL, IMAP by
  ``UIDVALIDITY:UID``: ``imap_key``).
- ``renumbered`` / ``rematch``: an IMAP server that changed UIDVALIDITY renumbered its
  messages; the listed messages whose digest (``digest``: Message-ID, or the whole header
  block, plus the size) matches a seen one are recorded under their new key instead of
  being fetched again - no duplicates. Two identical copies are matched one for one.
- ``to_delete``: with ``keep`` off, the listed messages whose delivery was confirmed in an
  earlier run (a POP3 session that dropped before QUIT deleted nothing). A message the
  local MTA refused (``refused``) stays on the server.
- ``to_forget``: seen entries of messages no longer listed (deleted on the server).
- ``outcome``: an SMTP reply code as delivered (2xx), temporary (4xx and anything
  unexpected: the mail stays on the server) or permanent (5xx: recorded, kept, not retried).
- ``trace_headers`` and ``envelope_sender``: what the fetched message is submitted with.

Errors: none; bad input gives a best-effort answer (a message without headers digests
its size alone).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate, getaddresses, parseaddr

DELIVERED = "delivered"
REFUSED = "refused"
TEMPORARY = "temporary"

Seen = Mapping[str, tuple[str, str]]  # uid_key -> (digest, state)


@dataclass(frozen=True, slots=True)
class Listed:
    """One message as the server lists it."""

    key: str  # the seen key: POP3 UIDL, or IMAP "UIDVALIDITY:UID"
    ref: str  # how the session names it: the POP3 message number, the IMAP UID
    size: int


def imap_key(uidvalidity: int, uid: int | str) -> str:
    return f"{uidvalidity}:{uid}"


def to_fetch(listed: Sequence[Listed], seen: Seen) -> list[Listed]:
    return [m for m in listed if m.key not in seen]


def renumbered(listed: Sequence[Listed], seen: Seen, uidvalidity: int) -> bool:
    """True when an IMAP account has seen entries, none of them of this UIDVALIDITY."""
    prefix = f"{uidvalidity}:"
    return bool(seen) and bool(listed) and not any(k.startswith(prefix) for k in seen)


def rematch(candidates: Sequence[tuple[Listed, str]], seen: Seen) -> list[tuple[Listed, str, str]]:
    """(message, digest, state) for each candidate whose digest a seen entry has.

    ``candidates`` are (listed message, its digest); each seen entry matches at most one
    candidate, so of two identical copies on the server only as many are skipped as were
    seen before.
    """
    states: dict[str, list[str]] = {}
    for seen_digest, state in seen.values():
        if seen_digest:
            states.setdefault(seen_digest, []).append(state)
    out = []
    for message, message_digest in candidates:
        left = states.get(message_digest)
        if left:
            out.append((message, message_digest, left.pop(0)))
    return out


def to_delete(listed: Sequence[Listed], seen: Seen, keep: bool) -> list[Listed]:
    if keep:
        return []
    return [m for m in listed if seen.get(m.key, ("", ""))[1] == DELIVERED]


def to_forget(listed: Sequence[Listed], seen: Seen) -> list[str]:
    present = {m.key for m in listed}
    return sorted(k for k in seen if k not in present)


def outcome(code: int) -> str:
    """``delivered`` for 2xx, ``refused`` for 5xx, ``temporary`` for anything else."""
    if 200 <= code < 300:
        return DELIVERED
    if 500 <= code < 600:
        return REFUSED
    return TEMPORARY


def header_block(raw: bytes) -> bytes:
    """The header section of a message, up to and including the blank line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = raw.find(sep)
        if end >= 0:
            return raw[: end + len(sep)]
    return raw


_FOLD = re.compile(rb"\r?\n[ \t]+")


def header_value(header: bytes, name: str) -> str:
    """The first ``name:`` field of a header block, unfolded and stripped ('' if none)."""
    unfolded = _FOLD.sub(b" ", header)
    pattern = re.compile(rb"^" + re.escape(name.encode()) + rb":[ \t]*(.*?)\r?$", re.I | re.M)
    found = pattern.search(unfolded)
    return found.group(1).decode("utf-8", "replace").strip() if found else ""


def digest(header: bytes, size: int) -> str:
    """What recognises a message after the server renumbered it: its Message-ID and size,
    or (without a Message-ID) its whole header block and size."""
    message_id = header_value(header, "Message-ID")
    basis = message_id.encode() if message_id else header.replace(b"\r\n", b"\n")
    return hashlib.sha256(b"%d\n" % size + basis).hexdigest()


def envelope_sender(header: bytes) -> str:
    """Return-Path, else the From address, else '' (the null sender)."""
    _, address = parseaddr(header_value(header, "Return-Path"))
    if not address:
        pairs = getaddresses([header_value(header, "From")])
        address = pairs[0][1] if pairs else ""
    if not address or any(c in address for c in "<> \t\r\n") or address.count("@") != 1:
        return ""
    return address


def trace_headers(
    *,
    protocol: str,
    tls: str,
    host: str,
    port: int,
    username: str,
    folder: str,
    mailbox: str,
    now: float,
) -> bytes:
    """The ``Received:`` and ``X-Mailwarden-Fetched-From:`` fields put on top."""
    with_ = {"pop3": "POP3", "imap": "IMAP"}[protocol] + ("S" if tls != "none" else "")
    where = f"{protocol}://{username}@{host}:{port}" + (f"/{folder}" if protocol == "imap" else "")
    received = (
        f"Received: from {host} by mailwarden-fetch with {with_}\r\n"
        f"\tfor <{mailbox}>; {formatdate(now)}\r\n"
    )
    return (received + f"X-Mailwarden-Fetched-From: {_clean(where)}\r\n").encode("utf-8", "replace")


def _clean(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)
