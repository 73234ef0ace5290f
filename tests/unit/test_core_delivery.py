"""Table tests for the pure delivery rules: quota, loop, warnings, spam treatment, vacation."""

from __future__ import annotations

import pytest

from mailwarden.core import quotacheck, spamtreat
from mailwarden.core import vacation as vac
from mailwarden.core.delivery import Usage, loop_verdict, warning_due
from mailwarden.core.spamsettings import Effective


@pytest.mark.parametrize(
    ("used", "count", "max_b", "max_c", "size", "fits"),
    [
        (0, 0, 0, 0, 10**9, True),  # unlimited
        (900, 1, 1000, 0, 100, True),  # exactly at the limit after delivery
        (900, 1, 1000, 0, 101, False),
        (1000, 1, 1000, 0, 1, False),
        (0, 9, 0, 10, 1, True),
        (0, 10, 0, 10, 1, False),  # message limit
    ],
)
def test_quota_fits(used: int, count: int, max_b: int, max_c: int, size: int, fits: bool) -> None:
    assert Usage(used, count, max_b, max_c).fits(size) is fits


@pytest.mark.parametrize(("tempfail", "dsn"), [(True, "4.2.2"), (False, "5.2.2")])
def test_quota_status_by_setting(tempfail: bool, dsn: str) -> None:
    v = quotacheck.decide(Usage(1000, 1, 1000, 0).facts(1), tempfail=tempfail)
    assert v.dsn == dsn


@pytest.mark.parametrize(
    ("used", "max_b", "count", "max_c", "percent"),
    [(0, 0, 0, 0, 0), (900, 1000, 0, 0, 90), (10, 1000, 9, 10, 90), (2000, 1000, 0, 0, 200)],
)
def test_percent(used: int, max_b: int, count: int, max_c: int, percent: int) -> None:
    assert Usage(used, count, max_b, max_c).percent() == percent


@pytest.mark.parametrize(
    ("percent", "warned", "thresholds", "due", "mark"),
    [
        (50, 0, (90,), None, 0),
        (90, 0, (90,), 90, 90),  # first crossing
        (95, 90, (90,), None, 90),  # already warned
        (50, 90, (90,), None, 0),  # dropped below: re-arm
        (96, 80, (80, 95), 95, 95),
        (85, 95, (80, 95), None, 80),
    ],
)
def test_warning_due(
    percent: int, warned: int, thresholds: tuple[int, ...], due: int | None, mark: int
) -> None:
    assert warning_due(percent, warned, thresholds) == (due, mark)


@pytest.mark.parametrize(
    ("values", "dsn"),
    [
        ([], "2.0.0"),
        (["bob@example.test"], "2.0.0"),
        (["Alice@Example.TEST"], "5.4.6"),
        (["<alice@example.test>"], "5.4.6"),
        (["x@y.test", "alice@example.test"], "5.4.6"),
    ],
)
def test_loop(values: list[str], dsn: str) -> None:
    assert loop_verdict(values, "alice@example.test").dsn == dsn


@pytest.mark.parametrize(
    ("flag", "score", "status", "expected"),
    [
        (None, None, None, spamtreat.SpamVerdict(None, None)),
        ("YES", "7.5", None, spamtreat.SpamVerdict(True, 7.5)),
        ("NO", "-1.2", None, spamtreat.SpamVerdict(False, -1.2)),
        (None, "nan", None, spamtreat.SpamVerdict(None, None)),
        (None, None, "Yes, score=12.3 required=5.0", spamtreat.SpamVerdict(True, 12.3)),
        ("YES", "garbage", None, spamtreat.SpamVerdict(True, None)),
    ],
)
def test_read_verdict(
    flag: str | None, score: str | None, status: str | None, expected: spamtreat.SpamVerdict
) -> None:
    assert spamtreat.read_verdict(flag, score, status) == expected


@pytest.mark.parametrize(
    ("flag", "score", "action", "threshold", "result"),
    [
        (True, 6.0, "folder", 5.0, "folder"),
        (True, 6.0, "folder", 8.0, "inbox"),  # per-user threshold above the score
        (False, 5.0, "folder", 5.0, "folder"),  # score at the threshold counts
        (True, None, "tag", 5.0, "tag"),  # no score: flag decides
        (False, None, "folder", 5.0, "inbox"),
        (None, 20.0, "discard", 5.0, "discard"),
        (True, 20.0, "reject", 5.0, "folder"),  # too late to reject
    ],
)
def test_treatment(
    flag: bool | None, score: float | None, action: str, threshold: float, result: str
) -> None:
    eff = Effective(action, threshold, "mailbox")
    assert spamtreat.treatment(spamtreat.SpamVerdict(flag, score), eff) == result


NOW = 1_700_000_000
ME = {"alice@example.test", "info@example.test"}


def _msg(
    sender: str = "bob@other.test", to: str = "alice@example.test", **hdrs: str
) -> vac.Incoming:
    headers = {k.replace("_", "-").lower(): v for k, v in hdrs.items()}
    return vac.Incoming(sender, headers, frozenset(headers), frozenset({to}))


@pytest.mark.parametrize(
    ("vacation", "msg", "last", "reason"),
    [
        (vac.Vacation("s", "b"), _msg(), None, None),
        (None, _msg(), None, "inactive"),
        (vac.Vacation("s", "b", active=False), _msg(), None, "inactive"),
        (vac.Vacation("s", "b", starts_at=NOW + 10), _msg(), None, "window"),
        (vac.Vacation("s", "b", ends_at=NOW), _msg(), None, "window"),
        (vac.Vacation("s", "b"), _msg(sender=""), None, "null-sender"),
        (vac.Vacation("s", "b"), _msg(sender="MAILER-DAEMON@x.test"), None, "never-reply"),
        (vac.Vacation("s", "b"), _msg(sender="owner-list@x.test"), None, "never-reply"),
        (vac.Vacation("s", "b"), _msg(sender="list-request@x.test"), None, "never-reply"),
        (vac.Vacation("s", "b"), _msg(sender="alice@example.test"), None, "own-address"),
        (vac.Vacation("s", "b"), _msg(auto_submitted="auto-replied"), None, "auto-submitted"),
        (vac.Vacation("s", "b"), _msg(auto_submitted="auto-generated"), None, "auto-submitted"),
        (vac.Vacation("s", "b"), _msg(auto_submitted="no"), None, None),
        (vac.Vacation("s", "b"), _msg(list_id="<l.x.test>"), None, "list"),
        (vac.Vacation("s", "b"), _msg(list_unsubscribe="<mailto:x>"), None, "list"),
        (vac.Vacation("s", "b"), _msg(precedence="bulk"), None, "precedence"),
        (vac.Vacation("s", "b"), _msg(precedence="junk"), None, "precedence"),
        (vac.Vacation("s", "b"), _msg(precedence="list"), None, "precedence"),
        (vac.Vacation("s", "b"), _msg(x_auto_response_suppress="OOF, AutoReply"), None, "suppress"),
        (vac.Vacation("s", "b"), _msg(to="someone@else.test"), None, "not-addressed"),
        (vac.Vacation("s", "b"), _msg(to="info@example.test"), None, None),  # an alias
        (vac.Vacation("s", "b", interval=86400), _msg(), NOW - 100, "recent"),
        (vac.Vacation("s", "b", interval=86400), _msg(), NOW - 86400, None),
    ],
)
def test_vacation_suppression(
    vacation: vac.Vacation | None, msg: vac.Incoming, last: int | None, reason: str | None
) -> None:
    assert vac.suppression(vacation, msg, ME, now=NOW, last_sent=last) == reason


@pytest.mark.parametrize(
    ("original", "subject"),
    [("Hello", "Auto: Hello"), (None, "Automated reply"), ("  a\n  b ", "Auto: a b")],
)
def test_reply_subject(original: str | None, subject: str) -> None:
    assert vac.reply_subject("", original) == subject


@pytest.mark.parametrize("original", ["Hello", None, ""])
def test_reply_subject_configured_wins(original: str | None) -> None:
    # RFC 5230 §4.4: the configured subject is the subject, whatever the incoming one
    assert vac.reply_subject("Away  until Monday", original) == "Away until Monday"
