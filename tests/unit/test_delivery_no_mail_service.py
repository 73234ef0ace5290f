"""The delivery agent refuses a mailbox whose services exclude ``mail`` (issue 9).

Such a mailbox has no IMAP/POP3 login (``dovecot_users`` leaves it out), so mail written
to it could never be read. The rule is ``core.recipient.mailbox_verdict``, the one the
policy daemon applies at RCPT; here it answers 5.2.1 at RCPT (LMTP) and at DATA, writes
nothing, and a mailbox with ``mail`` among its services is delivered to as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden.core import recipient
from tests.unit.test_delivery_deliver import Env


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_no_mail_service_is_refused_and_nothing_written(env: Env) -> None:
    env.cli.ok("user", "set", "alice@example.test", "--services", "calendar,contacts")
    assert env.lda.check_recipient("alice@example.test").dsn == "5.2.1"
    assert env.deliver("alice+tag@example.test") == "5.2.1"
    assert env.new() == []
    assert env.rec.entries[-1].outcome == "rejected"
    # switched back on: delivered again
    env.cli.ok("user", "set", "alice@example.test", "--services", "mail,calendar")
    assert env.deliver() == "2.0.0" and len(env.new()) == 1


@pytest.mark.parametrize(
    ("services", "forwarded", "keep_copy", "dsn"),
    [
        (7, False, False, "2.0.0"),
        (1, False, False, "2.0.0"),
        (6, False, False, "5.2.1"),
        (0, False, False, "5.2.1"),
        (6, True, False, "2.0.0"),  # forwards only: nothing is stored
        (6, True, True, "5.2.1"),  # the kept copy would be unreadable
        (1, True, True, "2.0.0"),
    ],
)
def test_mailbox_verdict(services: int, forwarded: bool, keep_copy: bool, dsn: str) -> None:
    verdict = recipient.mailbox_verdict(services, forwarded=forwarded, keep_copy=keep_copy)
    assert verdict.dsn == dsn
