"""Operator values, parsed and shown: sizes, durations, counts, yes/no, dates and times.

Who calls it: the admin CLI (``--quota``, ``--max-mailboxes``, ``--active``, ``--expires``,
``--from``, ``--day`` ...) and config checks. Pure: text in, value out (and back); the
argparse side is ``admin.args``.

Sizes are binary (``1K`` = 1024 bytes) and durations accept ``s m h d w`` suffixes (a
bare number is seconds). Counts are whole numbers up to ``MAX_COUNT``; for sizes and counts
that are limits, ``0`` means unlimited (``format_size_limit``, ``format_count_limit``).
Dates are ISO 8601: ``YYYY-MM-DD`` or a date-time, in local time unless an offset is given.
Times are shown as ISO 8601 UTC (``format_iso``: ``2026-12-04T19:15:00Z``).

Errors: ``UsageError`` naming the bad value (and the option, where one is passed in) and
the accepted forms.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from mailwarden.errors import UsageError

MAX_COUNT = 2**31 - 1  # fits every count column in both dialects

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_FACTOR = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_DURATION_FACTOR = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_SIZE = 2**63 - 1
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_YES = ("yes", "y", "true", "1", "on")
_NO = ("no", "n", "false", "0", "off")


def parse_size(text: str) -> int:
    """``"500M"`` -> 524288000; ``"0"`` -> 0 (unlimited)."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(
            f"invalid size {text!r}: use a number with K, M, G or T (e.g. 500M, 2G, 0)"
        )
    # Decimal keeps whole numbers exact beyond 2**53 (float would round them).
    value = int(Decimal(m.group(1)) * _SIZE_FACTOR[m.group(2).lower()])
    if value > _MAX_SIZE:
        raise UsageError(f"invalid size {text!r}: too large")
    return value


def parse_duration(text: str) -> int:
    """``"30m"`` -> 1800 seconds; ``"7d"`` -> 604800."""
    m = _DURATION.match(text)
    if not m:
        raise UsageError(
            f"invalid duration {text!r}: use a number with s, m, h, d or w (e.g. 30m, 7d)"
        )
    value = int(m.group(1)) * _DURATION_FACTOR[m.group(2).lower()]
    if value > 100 * 365 * 86400:
        raise UsageError(f"invalid duration {text!r}: longer than 100 years")
    return value


def format_size(value: int) -> str:
    """The shortest exact form: 524288000 -> ``"500M"``, 0 -> ``"0"``."""
    for suffix in ("T", "G", "M", "K"):
        factor = _SIZE_FACTOR[suffix.lower()]
        if value and value % factor == 0:
            return f"{value // factor}{suffix}"
    return str(value)


def format_duration(seconds: int) -> str:
    for suffix in ("w", "d", "h", "m"):
        factor = _DURATION_FACTOR[suffix]
        if seconds and seconds % factor == 0:
            return f"{seconds // factor}{suffix}"
    return f"{seconds}s"


def format_size_limit(value: int) -> str:
    """A size limit: ``"unlimited"`` for 0, else ``format_size``."""
    return "unlimited" if value == 0 else format_size(value)


def parse_count(text: str, option: str) -> int:
    """A whole number from 0 to ``MAX_COUNT`` typed for ``option``."""
    value = text.strip()
    if not value.isascii() or not value.isdigit() or int(value) > MAX_COUNT:
        raise UsageError(
            f"invalid {option} {text!r}: expected a whole number between 0 and {MAX_COUNT} "
            "(0 = unlimited)"
        )
    return int(value)


def format_count_limit(value: int) -> str:
    """A count limit: ``"unlimited"`` for 0, else the number."""
    return "unlimited" if value == 0 else str(value)


def parse_yes_no(text: str, option: str) -> bool:
    value = text.strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise UsageError(f"invalid {option} {text!r}: expected yes or no")


def parse_day(text: str) -> str:
    """A calendar day ``YYYY-MM-DD``, checked and returned in that form."""
    raw = text.strip()
    try:
        if _DATE.match(raw):
            return date.fromisoformat(raw).isoformat()
    except ValueError:
        pass
    raise UsageError(f"invalid day {text!r}: use YYYY-MM-DD")


def parse_when(text: str, option: str, *, end: bool = False) -> int:
    """A date or ISO date-time (local unless offset given) as UNIX seconds. A bare date
    means the start of that day, or for an end the start of the next day."""
    raw = text.strip()
    try:
        if _DATE.match(raw):
            day = date.fromisoformat(raw) + timedelta(days=1 if end else 0)
            return int(datetime(day.year, day.month, day.day).timestamp())
        if _DATETIME.match(raw):
            return int(datetime.fromisoformat(raw).timestamp())
    except (ValueError, OverflowError):
        pass
    raise UsageError(f"invalid date {text!r} for {option}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM")


def format_iso(ts: int | None) -> str | None:
    """UNIX seconds as ISO 8601 UTC, ``2026-12-04T19:15:00Z``: the one form every admin
    command prints a time in, JSON included; None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_utc(ts: int | None) -> str | None:
    """``format_iso`` for columns where 0 means never (``last_login``): None and 0 are None."""
    if not ts:
        return None
    return format_iso(ts)
