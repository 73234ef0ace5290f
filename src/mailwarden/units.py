"""Sizes and durations as operators type them: ``500M``, ``2G``, ``0``; ``30m``, ``7d``.

Who calls it: the admin CLI (``--quota``, ``--expires``, ``--interval``) and config checks.
Sizes are binary (``1K`` = 1024 bytes); ``0`` means unlimited. Durations accept
``s m h d w`` suffixes (a bare number is seconds).

Errors: ``UsageError`` naming the bad value and the accepted forms.
"""

from __future__ import annotations

import re
from decimal import Decimal

from mailwarden.errors import UsageError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_FACTOR = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_DURATION_FACTOR = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_SIZE = 2**63 - 1


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
