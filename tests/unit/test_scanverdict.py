"""Table tests for core.scanverdict: every branch, boundaries included."""

from __future__ import annotations

import dataclasses

import pytest

from mailwarden.config import MilterSettings
from mailwarden.core import scanverdict as sv
from mailwarden.core.scanverdict import AvResult, SpamResult

S = MilterSettings()
CLEAN = AvResult(sv.CLEAN)
HAM = SpamResult(sv.SCORED, 1.2, 5.0, ("A", "B"))
SPAM = SpamResult(sv.SCORED, 7.3, 5.0, ("GTUBE",))


def s(**kw: object) -> MilterSettings:
    return dataclasses.replace(S, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("received", "max_received", "refused"),
    [(0, 50, False), (50, 50, False), (51, 50, True), (1000, 0, False), (2, 1, True)],
)
def test_loop(received: int, max_received: int, refused: bool) -> None:
    v = sv.loop_verdict(received, s(max_received=max_received))
    assert (v is not None) == refused
    if v is not None:
        assert (v.dsn, v.smtp_code) == ("5.4.6", 554)


@pytest.mark.parametrize(
    ("size", "auth", "allowed", "settings", "why"),
    [
        (100, False, False, S, None),
        (512 * 1024, False, False, S, None),
        (512 * 1024 + 1, False, False, S, "too large"),
        (10**9, False, False, s(spam_max_size=0), None),
        (100, True, False, S, "authenticated"),
        (100, True, False, s(scan_authenticated_spam=True), None),
        (100, False, True, S, "allow-listed"),
        (100, False, False, s(spamd=""), "no spamd configured"),
    ],
)
def test_spam_skip(
    size: int, auth: bool, allowed: bool, settings: MilterSettings, why: str | None
) -> None:
    assert sv.spam_skip(size, auth, allowed, settings) == why


@pytest.mark.parametrize(
    ("av", "spam", "settings", "action", "label", "dsn"),
    [
        (CLEAN, HAM, S, sv.CONTINUE, "clean", "2.0.0"),
        (CLEAN, SPAM, S, sv.CONTINUE, "spam", "2.0.0"),
        (AvResult(sv.VIRUS, "Eicar"), HAM, S, sv.REJECT, "virus", "5.7.1"),
        (AvResult(sv.VIRUS, "Eicar"), HAM, s(virus_action="discard"), sv.DISCARD, "virus", "5.7.1"),
        (
            AvResult(sv.VIRUS, "E"),
            HAM,
            s(virus_action="quarantine"),
            sv.QUARANTINE,
            "virus",
            "5.7.1",
        ),
        (AvResult(sv.ERROR, detail="refused"), HAM, S, sv.TEMPFAIL, "tempfail", "4.3.0"),
        (AvResult(sv.ERROR), HAM, s(clamd_failure="accept"), sv.CONTINUE, "clean", "2.0.0"),
        (
            AvResult(sv.ERROR),
            SpamResult(sv.ERROR),
            s(clamd_failure="accept"),
            sv.CONTINUE,
            "unscanned",
            "2.0.0",
        ),
        (AvResult(sv.TOO_LARGE), HAM, S, sv.CONTINUE, "clean", "2.0.0"),
        (
            AvResult(sv.TOO_LARGE),
            HAM,
            s(clamd_oversize="tempfail"),
            sv.TEMPFAIL,
            "tempfail",
            "4.3.0",
        ),
        (CLEAN, SpamResult(sv.ERROR), S, sv.CONTINUE, "unscanned", "2.0.0"),
        (
            CLEAN,
            SpamResult(sv.ERROR),
            s(spamd_failure="tempfail"),
            sv.TEMPFAIL,
            "tempfail",
            "4.3.0",
        ),
        (CLEAN, SPAM, s(spam_reject_score=7.3), sv.REJECT, "spam", "5.7.1"),
        (CLEAN, SPAM, s(spam_reject_score=7.4), sv.CONTINUE, "spam", "2.0.0"),
        (CLEAN, SpamResult(sv.SKIPPED, detail="allow-listed"), S, sv.CONTINUE, "allowed", "2.0.0"),
        (
            AvResult(sv.SKIPPED),
            SpamResult(sv.SKIPPED, detail="x"),
            S,
            sv.CONTINUE,
            "clean",
            "2.0.0",
        ),
    ],
)
def test_decide(
    av: AvResult, spam: SpamResult, settings: MilterSettings, action: str, label: str, dsn: str
) -> None:
    out = sv.decide(av, spam, settings)
    assert (out.action, out.label, out.verdict.dsn) == (action, label, dsn)


def test_virus_reply_text_is_safe() -> None:
    out = sv.decide(AvResult(sv.VIRUS, "Bad%Name\r\nX"), HAM, S)
    assert out.verdict.text == "Virus Bad?Name??X detected"
    assert out.verdict.smtp_code == 554 and out.add_headers == ()


def test_headers_clean_ham() -> None:
    out = sv.decide(CLEAN, HAM, S)
    assert out.add_headers == (
        ("X-Virus-Scanned", "mailwarden (ClamAV)"),
        ("X-Spam-Flag", "NO"),
        ("X-Spam-Score", "1.2"),
        ("X-Spam-Status", "No, score=1.2 required=5.0 tests=A,B"),
    )


@pytest.mark.parametrize(
    ("score", "flag"), [(4.9, "NO"), (5.0, "YES"), (1000.0, "YES"), (-2.0, "NO")]
)
def test_flag_boundary(score: float, flag: str) -> None:
    headers = dict(sv.spam_headers(SpamResult(sv.SCORED, score, 5.0)))
    assert headers["X-Spam-Flag"] == flag
    assert (
        headers["X-Spam-Status"]
        == f"{'Yes' if flag == 'YES' else 'No'}, score={score:.1f} required=5.0"
    )


def test_unscanned_headers_and_no_av_header_on_error() -> None:
    out = sv.decide(
        AvResult(sv.ERROR), SpamResult(sv.SKIPPED, detail="too large"), s(clamd_failure="accept")
    )
    assert out.add_headers == (("X-Spam-Status", "unscanned (too large)"),)


def test_long_test_list_is_cut() -> None:
    tests = tuple(f"RULE_NUMBER_{i}" for i in range(200))
    status = dict(sv.spam_headers(SpamResult(sv.SCORED, 9.0, 5.0, tests)))["X-Spam-Status"]
    assert len(status) < 700 and status.endswith(",...")


def test_headers_read_back_by_the_delivery_agent() -> None:
    from mailwarden.core import spamtreat

    h = dict(sv.spam_headers(SPAM))
    v = spamtreat.read_verdict(h["X-Spam-Flag"], h["X-Spam-Score"], h["X-Spam-Status"])
    assert (v.flag, v.score) == (True, 7.3)
