"""Delivery rules: quota decision, mail-loop check, quota warning thresholds.

What it does
    Pure decisions the delivery agent (``delivery.deliver``) takes for one recipient, fed
    with facts it has read from the store and the Maildir:

    ``Usage``             usage and limits of one mailbox; whether a message fits is
                          decided by ``core.quotacheck`` (the same rule policyd applies
                          at RCPT time: 4.2.2, or 5.2.2 without ``quota_full_tempfail``)
    ``loop_verdict``      does the message already carry our ``Delivered-To`` (RFC 9228
                          §4: a message that comes back to a recipient it was delivered
                          to is a loop, 5.4.6)
    ``warning_due``       which warning threshold, if any, a delivery has just crossed
                          (once per crossing: the stored ``warned_percent`` is raised to
                          it, and lowered again when usage drops below)

Pure: no I/O, no clock, no logging, no mutable module state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailwarden.core.quotacheck import QuotaFacts, is_full
from mailwarden.verdict import OK, Verdict


@dataclass(frozen=True, slots=True)
class Usage:
    """Current usage and limits of one mailbox (0 limit = unlimited)."""

    bytes: int
    messages: int
    max_bytes: int
    max_messages: int

    def facts(self, size: int) -> QuotaFacts:
        """The facts ``core.quotacheck.decide`` takes, for a message of ``size`` bytes."""
        return QuotaFacts(self.max_bytes, self.max_messages, self.bytes, self.messages, size)

    def fits(self, size: int) -> bool:
        return not is_full(self.facts(size))

    def percent(self) -> int:
        """Highest fill level of the two limits, in whole percent (0 when unlimited)."""
        levels = [0]
        if self.max_bytes:
            levels.append(self.bytes * 100 // self.max_bytes)
        if self.max_messages:
            levels.append(self.messages * 100 // self.max_messages)
        return max(levels)


def loop_verdict(delivered_to: Iterable[str], recipient: str) -> Verdict:
    """5.4.6 when a ``Delivered-To`` value already names ``recipient`` (case-insensitive)."""
    wanted = recipient.strip().lower()
    for value in delivered_to:
        if value.strip().strip("<>").lower() == wanted:
            return Verdict("5.4.6", f"<{recipient}> Mail loop: already delivered to this mailbox")
    return OK


def warning_due(percent: int, warned: int, thresholds: Iterable[int]) -> tuple[int | None, int]:
    """(threshold to warn about or None, new ``warned_percent``) after a delivery.

    The highest threshold reached is reported only when it is above ``warned``; when usage
    falls below every threshold that was warned about, the mark drops so that the next
    crossing warns again.
    """
    reached = [t for t in thresholds if percent >= t]
    top = max(reached, default=0)
    if top > warned:
        return top, top
    return None, min(warned, top)
