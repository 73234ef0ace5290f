"""Spam treatment: what the delivery agent does with a message for one recipient.

What it does
    ``read_verdict`` turns the scanner headers (SpamAssassin's ``X-Spam-Flag`` and
    ``X-Spam-Score``, or ``X-Spam-Status: Yes, score=…``) into a ``SpamVerdict``;
    ``treatment`` combines it with the recipient's effective settings
    (``core.spamsettings.effective``) into one of:

    ``inbox``     not spam for this recipient (score below their threshold)
    ``tag``       spam, delivered to the Inbox with an ``X-Mailwarden-Spam`` header
    ``folder``    spam, filed into the junk folder
    ``discard``   spam, accepted and dropped

The per-recipient threshold decides when a score is present; without a score the
scanner's flag decides. ``reject`` is an SMTP-time action (the milter refuses the
message before it is queued); by delivery time a refusal would be a bounce to a
probably forged sender (backscatter), so the LDA files such mail like ``folder``.

Pure: no I/O, no clock, no mutable module state.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mailwarden.core.spamsettings import Effective

INBOX, TAG, FOLDER, DISCARD = "inbox", "tag", "folder", "discard"
_SCORE = re.compile(r"score=(-?\d+(?:\.\d+)?)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SpamVerdict:
    """What the scanner said: flag (None = no header) and score (None = no score)."""

    flag: bool | None = None
    score: float | None = None


def _number(text: str) -> float | None:
    try:
        value = float(text.strip().split()[0])
    except (ValueError, IndexError):
        return None
    return value if math.isfinite(value) else None


def read_verdict(flag: str | None, score: str | None, status: str | None = None) -> SpamVerdict:
    """Parse ``X-Spam-Flag`` / ``X-Spam-Score`` / ``X-Spam-Status`` header values."""
    parsed_flag = None if flag is None else flag.strip().lower().startswith("y")
    parsed_score = None if score is None else _number(score)
    if status is not None:
        if parsed_flag is None:
            parsed_flag = status.strip().lower().startswith("y")
        m = _SCORE.search(status)
        if parsed_score is None and m:
            parsed_score = _number(m.group(1))
    return SpamVerdict(parsed_flag, parsed_score)


def is_spam(verdict: SpamVerdict, threshold: float) -> bool:
    """Score at or above the recipient's threshold; the flag when there is no score."""
    if verdict.score is not None:
        return verdict.score >= threshold
    return bool(verdict.flag)


def treatment(verdict: SpamVerdict, settings: Effective) -> str:
    """``inbox``, ``tag``, ``folder`` or ``discard`` for this recipient."""
    if not is_spam(verdict, settings.threshold):
        return INBOX
    if settings.action in (TAG, DISCARD):
        return settings.action
    return FOLDER  # "folder", and "reject" too late to refuse (see module doc)
