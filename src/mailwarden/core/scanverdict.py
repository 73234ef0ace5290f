"""Scan verdict: what the milter does with a message, from the scanners' facts.

What it does
    ``loop_verdict`` refuses a message that went round too often (more ``Received:``
    headers than ``milter.max_received``: 554 5.4.6, RFC 5321 §6.3). ``spam_skip`` says
    whether (and why) SpamAssassin is not asked at all. ``decide`` combines the ClamAV
    result, the SpamAssassin result and the settings into one ``Outcome``: the
    ``Verdict``, the milter action, the metrics label and the headers to add.

Who calls it: ``milter.app`` at end of header (loop) and end of message (the rest);
``tests/unit/test_scanverdict.py`` tables every branch.

Header contract (read by the delivery agent, ``core.spamtreat.read_verdict``), in
SpamAssassin's own form so other tools understand them too::

    X-Spam-Flag: YES | NO
    X-Spam-Score: 7.3
    X-Spam-Status: Yes, score=7.3 required=5.0 tests=GTUBE,...   (or: unscanned (reason))
    X-Virus-Scanned: mailwarden (ClamAV)                         (clean mail only)

Every incoming header named in ``REMOVE`` is deleted first so a sender cannot forge a
verdict. The spam score is one per message; the per-recipient decision (Inbox, Junk,
discard) is the delivery agent's, with each mailbox's own threshold. Only the global
``spam_reject_score`` (when > 0) refuses at SMTP time.

Failure policy (DESIGN §3.2): a scanner that fails follows its ``*_failure`` setting;
``tempfail`` answers 451 4.3.0 — never a bounce, never unchecked mail unless configured.

Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.config import MilterSettings
from mailwarden.verdict import OK, Verdict

# Headers a sender must not be able to set (compared case-insensitively).
REMOVE = ("X-Spam-Flag", "X-Spam-Score", "X-Spam-Status", "X-Spam-Report", "X-Virus-Scanned")
VIRUS_SCANNED = ("X-Virus-Scanned", "mailwarden (ClamAV)")

# Milter actions (the adapter maps them onto pymilter return codes).
CONTINUE, REJECT, TEMPFAIL, DISCARD, QUARANTINE = (
    "continue",
    "reject",
    "tempfail",
    "discard",
    "quarantine",
)

# AV / spam result states.
CLEAN, VIRUS, ERROR, SKIPPED, TOO_LARGE = "clean", "virus", "error", "skipped", "too_large"
SCORED = "scored"
_MAX_TESTS_CHARS = 600  # keep X-Spam-Status well under the 998-octet line limit


@dataclass(frozen=True, slots=True)
class AvResult:
    """ClamAV's answer: ``clean``, ``virus`` (with ``name``), ``error`` (with ``detail``),
    ``too_large`` (clamd's StreamMaxLength) or ``skipped`` (no clamd configured)."""

    state: str
    name: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SpamResult:
    """SpamAssassin's answer: ``scored`` (score, required, tests), ``error`` (detail), or
    ``skipped`` with ``detail`` saying why (``too large``, ``allow-listed``, ...)."""

    state: str
    score: float = 0.0
    required: float = 5.0
    tests: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with the message. ``label`` is the metrics verdict (bounded set)."""

    verdict: Verdict
    action: str
    label: str
    add_headers: tuple[tuple[str, str], ...] = ()
    reason: str = ""


def loop_verdict(received: int, settings: MilterSettings) -> Verdict | None:
    """554 5.4.6 when the message has more Received: headers than allowed."""
    if settings.max_received > 0 and received > settings.max_received:
        return Verdict("5.4.6", f"Too many hops ({received} Received: headers), mail loop?")
    return None


def spam_skip(
    size: int, authenticated: bool, all_allowed: bool, settings: MilterSettings
) -> str | None:
    """Why SpamAssassin is not asked (None = ask it)."""
    if not settings.spamd:
        return "no spamd configured"
    if authenticated and not settings.scan_authenticated_spam:
        return "authenticated"
    if all_allowed:
        return "allow-listed"
    if settings.spam_max_size > 0 and size > settings.spam_max_size:
        return "too large"
    return None


def decide(av: AvResult, spam: SpamResult, settings: MilterSettings) -> Outcome:
    """Combine the scanner results into one outcome (virus first, then failures, spam)."""
    if av.state == VIRUS:
        return _virus(av.name, settings)
    if av.state == ERROR and settings.clamd_failure == "tempfail":
        return _tempfail("virus scanner unavailable", f"clamd: {av.detail}")
    if av.state == TOO_LARGE and settings.clamd_oversize == "tempfail":
        return _tempfail("message too large for the virus scanner", "clamd: size limit")
    if spam.state == ERROR and settings.spamd_failure == "tempfail":
        return _tempfail("spam scanner unavailable", f"spamd: {spam.detail}")
    headers = list(_av_headers(av)) + list(spam_headers(spam))
    reject_at = settings.spam_reject_score
    if spam.state == SCORED and reject_at > 0 and spam.score >= reject_at:
        return Outcome(
            Verdict("5.7.1", f"Message refused as spam (score {spam.score:.1f})"),
            REJECT,
            "spam",
            reason=f"score {spam.score:.1f} >= reject {reject_at:.1f}",
        )
    return Outcome(OK, CONTINUE, _label(av, spam), tuple(headers), _reason(av, spam))


def spam_headers(spam: SpamResult) -> tuple[tuple[str, str], ...]:
    """SpamAssassin-style X-Spam-* headers for this result."""
    if spam.state != SCORED:
        why = spam.detail or spam.state
        return (("X-Spam-Status", f"unscanned ({_clean(why)})"),)
    is_spam = spam.score >= spam.required
    tests = ",".join(spam.tests)
    if len(tests) > _MAX_TESTS_CHARS:
        tests = tests[:_MAX_TESTS_CHARS].rsplit(",", 1)[0] + ",..."
    status = f"{'Yes' if is_spam else 'No'}, score={spam.score:.1f} required={spam.required:.1f}"
    if tests:
        status += f" tests={tests}"
    return (
        ("X-Spam-Flag", "YES" if is_spam else "NO"),
        ("X-Spam-Score", f"{spam.score:.1f}"),
        ("X-Spam-Status", status),
    )


def _virus(name: str, settings: MilterSettings) -> Outcome:
    verdict = Verdict("5.7.1", f"Virus {_clean(name)} detected")
    action = {"discard": DISCARD, "quarantine": QUARANTINE}.get(settings.virus_action, REJECT)
    return Outcome(verdict, action, "virus", reason=f"virus {_clean(name)}")


def _tempfail(text: str, reason: str) -> Outcome:
    return Outcome(Verdict("4.3.0", f"{text}, try again later"), TEMPFAIL, "tempfail", (), reason)


def _av_headers(av: AvResult) -> tuple[tuple[str, str], ...]:
    return (VIRUS_SCANNED,) if av.state == CLEAN else ()


def _label(av: AvResult, spam: SpamResult) -> str:
    if spam.state == SCORED:
        return "spam" if spam.score >= spam.required else "clean"
    if spam.detail == "allow-listed":
        return "allowed"
    if spam.state == ERROR or av.state in (ERROR, TOO_LARGE):
        return "unscanned"
    return "clean"


def _reason(av: AvResult, spam: SpamResult) -> str:
    parts = [f"av={av.state}" + (f" ({av.detail})" if av.detail else "")]
    if spam.state == SCORED:
        parts.append(f"spam={spam.score:.1f}/{spam.required:.1f}")
    else:
        parts.append(f"spam={spam.state}" + (f" ({spam.detail})" if spam.detail else ""))
    return " ".join(parts)


def _clean(text: str) -> str:
    """Printable ASCII without '%' (pymilter's setreply treats it as a format char)."""
    return "".join(ch if " " <= ch <= "~" and ch != "%" else "?" for ch in text)[:200]
