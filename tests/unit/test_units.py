"""Tests for mailwarden.units: sizes, durations, counts, yes/no and times as operators type them."""

from __future__ import annotations

import pytest

from mailwarden.errors import UsageError
from mailwarden.units import (
    format_count_limit,
    format_duration,
    format_iso,
    format_size,
    format_size_limit,
    format_utc,
    parse_count,
    parse_day,
    parse_duration,
    parse_size,
    parse_when,
    parse_yes_no,
)

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1", 1),
        ("1024", 1024),
        ("1K", K),
        ("1k", K),
        ("500M", 500 * M),
        ("500m", 500 * M),
        ("2G", 2 * G),
        ("1T", T),
        ("1.5G", int(1.5 * G)),
        ("0.5K", 512),
        ("10MB", 10 * M),
        ("10MiB", 10 * M),
        ("10kib", 10 * K),
        ("  20M  ", 20 * M),
        ("20 M", 20 * M),
        ("0G", 0),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "M", "-1", "-1M", "1X", "1P", "1.2.3M", "ten", "1 G B", "0x10", "1e3", "500M;"],
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid size") as exc:
        parse_size(text)
    assert "\n" not in str(exc.value)


def test_parse_size_too_large() -> None:
    with pytest.raises(UsageError, match="too large"):
        parse_size("9999999T")
    with pytest.raises(UsageError, match="too large"):
        parse_size(str(2**63))


@pytest.mark.parametrize("value", [2**53 + 1, 2**63 - 1])
def test_parse_size_exact_for_large_whole_numbers(value: int) -> None:
    assert parse_size(str(value)) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("45", 45),
        ("45s", 45),
        ("30m", 1800),
        ("30M", 1800),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        (" 3 d ", 3 * 86400),
    ],
)
def test_parse_duration(text: str, expected: int) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "d", "-1d", "1.5h", "1y", "1h30m", "soon", "7 days"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


def test_parse_duration_bound() -> None:
    assert parse_duration(f"{100 * 365}d") == 100 * 365 * 86400
    with pytest.raises(UsageError, match="longer than 100 years"):
        parse_duration(f"{100 * 365 + 1}d")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (1, "1"),
        (1000, "1000"),
        (K, "1K"),
        (1536, "1536"),
        (500 * M, "500M"),
        (1536 * M, "1536M"),
        (2 * G, "2G"),
        (3 * T, "3T"),
    ],
)
def test_format_size(value: int, expected: str) -> None:
    assert format_size(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0s"),
        (45, "45s"),
        (90, "90s"),
        (1800, "30m"),
        (7200, "2h"),
        (86400, "1d"),
        (604800, "1w"),
        (1209600, "2w"),
        (90000, "25h"),
    ],
)
def test_format_duration(value: int, expected: str) -> None:
    assert format_duration(value) == expected


@pytest.mark.parametrize("value", [0, 1, 1023, K, 5 * K + 1, 500 * M, 7 * G, 2 * T, 2**40 + 1])
def test_size_round_trip(value: int) -> None:
    assert parse_size(format_size(value)) == value


@pytest.mark.parametrize("value", [0, 1, 59, 60, 61, 3600, 86399, 86400, 604800, 604801])
def test_duration_round_trip(value: int) -> None:
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(("text", "expected"), [("0", 0), (" 7 ", 7), ("2147483647", 2**31 - 1)])
def test_parse_count(text: str, expected: int) -> None:
    assert parse_count(text, "--n") == expected


@pytest.mark.parametrize("text", ["", "-1", "+1", "ten", "1.5", "2147483648", "١"])
def test_parse_count_rejects(text: str) -> None:
    with pytest.raises(UsageError, match=r"invalid --n .*whole number between 0 and"):
        parse_count(text, "--n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("yes", True), (" ON ", True), ("1", True), ("no", False), ("off", False)],
)
def test_parse_yes_no(text: str, expected: bool) -> None:
    assert parse_yes_no(text, "--active") is expected


def test_parse_yes_no_rejects() -> None:
    with pytest.raises(UsageError, match="invalid --active 'maybe': expected yes or no"):
        parse_yes_no("maybe", "--active")


def test_limits_show_zero_as_unlimited() -> None:
    assert (format_size_limit(0), format_size_limit(2 * G)) == ("unlimited", "2G")
    assert (format_count_limit(0), format_count_limit(5)) == ("unlimited", "5")


@pytest.mark.parametrize("text", ["2024-02-30", "20240101", "today", "2024-1-1"])
def test_parse_day_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid day"):
        parse_day(text)


def test_times() -> None:
    assert parse_day(" 2024-02-29 ") == "2024-02-29"
    assert parse_when("2023-11-14T22:13:20+00:00", "--from") == 1_700_000_000
    assert (
        parse_when("2024-01-01", "--until", end=True) - parse_when("2024-01-01", "--from") == 86400
    )
    assert format_utc(1_700_000_000) == "2023-11-14T22:13:20Z"
    assert format_iso(1_700_000_000) == "2023-11-14T22:13:20Z"  # one form, JSON too
    assert format_utc(0) is None and format_iso(None) is None
    assert format_iso(1_700_000_000) is not None
