"""Vacation rules (RFC 3834 §2, RFC 5230 §4): must this message get an auto-reply?

What it does
    ``suppression`` returns None when a reply is due, else the reason it is not (a short
    fixed word, usable in a log line). It checks, in this order:

    ``inactive``      no vacation, or switched off
    ``window``        outside the start/end window
    ``null-sender``   the envelope sender is ``<>`` (RFC 3834 §2 MUST NOT)
    ``never-reply``   MAILER-DAEMON, LISTSERV, majordomo, ``owner-*``, ``*-request``,
                      ``postmaster`` (RFC 5230 §4.6)
    ``own-address``   mail from the user's own addresses (Pigeonhole)
    ``auto-submitted``  ``Auto-Submitted`` other than ``no`` — so a reply (ours carries
                      ``auto-replied``) never triggers another one
    ``list``          ``List-Id`` or any other ``List-*`` header
    ``precedence``    ``Precedence: bulk|list|junk``
    ``suppress``      ``X-Auto-Response-Suppress: All|OOF`` (Microsoft)
    ``not-addressed`` none of the user's addresses in To/Cc/Bcc/Resent-* (RFC 5230 §4.5)
    ``recent``        a reply went to this sender within the interval (RFC 3834 §2)

Pure: no I/O, no clock (``now`` is passed in), no mutable module state.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

_NEVER_LOCAL = frozenset({"mailer-daemon", "listserv", "majordomo", "postmaster", "nobody"})
_BULK = frozenset({"bulk", "list", "junk"})


@dataclass(frozen=True, slots=True)
class Vacation:
    """The stored vacation of one mailbox (times in UNIX seconds, None = open)."""

    subject: str
    body: str
    starts_at: int | None = None
    ends_at: int | None = None
    interval: int = 7 * 86400
    active: bool = True


@dataclass(frozen=True, slots=True)
class Incoming:
    """Facts about the incoming message. Header names in ``headers`` are lower-case."""

    sender: str
    headers: dict[str, str] = field(default_factory=dict)
    header_names: frozenset[str] = frozenset()
    recipients: frozenset[str] = frozenset()  # addresses from To/Cc/Bcc/Resent-*, lower-case


def in_window(starts_at: int | None, ends_at: int | None, now: int) -> bool:
    """Started (``starts_at <= now``) and not yet ended (``now < ends_at``); None is open."""
    started = starts_at is None or starts_at <= now
    return started and (ends_at is None or now < ends_at)


def in_effect(vacation: Vacation | None, now: int) -> bool:
    """Active and within its window at ``now`` (``mailwarden vacation show``,
    the delivery agent before it looks any further)."""
    return (
        vacation is not None
        and vacation.active
        and in_window(vacation.starts_at, vacation.ends_at, now)
    )


def never_reply(sender: str) -> bool:
    """The RFC 5230 §4.6 never-reply list, applied to the sender's local part."""
    local = sender.rpartition("@")[0].lower() if "@" in sender else sender.lower()
    return (
        local in _NEVER_LOCAL
        or local.startswith("owner-")
        or local.endswith("-request")
        or local.startswith("bounce")
    )


def _header_reason(msg: Incoming) -> str | None:
    auto = msg.headers.get("auto-submitted", "no").strip().lower()
    if auto.split(";")[0].strip() != "no":
        return "auto-submitted"
    if any(name.startswith("list-") for name in msg.header_names):
        return "list"
    if msg.headers.get("precedence", "").strip().lower() in _BULK:
        return "precedence"
    suppress = msg.headers.get("x-auto-response-suppress", "").lower()
    if {"all", "oof"} & {part.strip() for part in suppress.split(",")}:
        return "suppress"
    return None


def suppression(
    vacation: Vacation | None,
    msg: Incoming,
    user_addresses: Collection[str],
    *,
    now: int,
    last_sent: int | None,
) -> str | None:
    """None when a reply is due; otherwise the reason for staying silent."""
    if vacation is None or not vacation.active:
        return "inactive"
    if not in_window(vacation.starts_at, vacation.ends_at, now):
        return "window"
    sender = msg.sender.strip().strip("<>").lower()
    if not sender or sender == "mailer-daemon":
        return "null-sender"
    if never_reply(sender):
        return "never-reply"
    mine = {a.lower() for a in user_addresses}
    if sender in mine:
        return "own-address"
    reason = _header_reason(msg)
    if reason:
        return reason
    if not mine & msg.recipients:
        return "not-addressed"
    if last_sent is not None and now - last_sent < vacation.interval:
        return "recent"
    return None


def reply_subject(configured: str, original: str | None) -> str:
    """The reply's ``Subject``: the one the user configured (RFC 5230 §4.4 ``:subject``);
    without one, ``Auto: <original>`` (RFC 3834 §3.1.5), or a fixed text when the
    incoming message had none (RFC 5230 §5.3)."""
    own = " ".join(configured.split())
    if own:
        return own
    text = " ".join((original or "").split())
    return f"Auto: {text}" if text else "Automated reply"
