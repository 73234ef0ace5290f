"""The delivery core's decisions on the in-memory store: no SQL, a real Maildir.

``delivery.deliver.Deliverer`` takes a ``store.facts.DeliveryStore``; here it is
``tests.unit.fakestore.FakeStore`` (pinned to the SQL store by test_store_facts.py). The
Maildir is real (a temp directory): what is decided must also be what is on disk.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mailwarden.config import MailSettings, Settings
from mailwarden.core import vacation as vacation_rules
from mailwarden.core.spamsettings import Layer
from mailwarden.delivery.deliver import Deliverer
from mailwarden.pipe import lda as pipe
from tests.unit.fakestore import FakeStore
from tests.unit.test_delivery_deliver import Recorder, Submitter

D = "example.test"
ALICE, BOB, CAROL, DAVE = (f"{u}@{D}" for u in ("alice", "bob", "carol", "dave"))
MSG = (
    b"From: x@other.test\r\nTo: alice@example.test\r\nSubject: Hi\r\n"
    b"Message-ID: <m@x>\r\n\r\nHi\r\n"
)
SPAM = b"X-Spam-Flag: YES\r\nX-Spam-Score: 9.5\r\n" + MSG


class Env:
    def __init__(self, root: Path, **mail: object) -> None:
        self.root = root
        self.store = FakeStore()
        self.store.add_domain(D)
        self.store.add_domain("off.test", active=False)
        self.store.add_mailbox(ALICE)
        self.store.add_mailbox(BOB)
        self.store.add_mailbox(CAROL, services=6)  # calendar and contacts, no mail
        self.store.add_mailbox(DAVE, active=False)
        self.store.add_mailbox("eve@off.test")
        base = MailSettings(root=str(root), uid=-1, gid=-1)
        self.settings = Settings(mail=dataclasses.replace(base, **mail))  # type: ignore[arg-type]
        self.rec = Recorder()
        self.sub = Submitter()
        self.lda = Deliverer(self.settings, self.store, self.rec, self.sub)  # type: ignore[arg-type]

    def deliver(self, rcpt: str = ALICE, data: bytes = MSG, sender: str = "x@other.test") -> str:
        v = self.lda.deliver(sender, rcpt, data)
        return f"{v.dsn} {v.text}"

    def files(self, user: str = "alice", folder: str = "") -> list[Path]:
        d = self.root / D / user / folder / "new"
        return sorted(d.iterdir()) if d.exists() else []


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


@pytest.mark.parametrize(
    ("rcpt", "expected", "exit_code"),
    [
        (f"nobody@{D}", "5.1.1 <nobody@example.test> User unknown", 67),
        ("alice@other.test", "5.1.1 <alice@other.test> User unknown", 67),
        (DAVE, "5.2.1 <dave@example.test> Mailbox disabled", 77),
        ("eve@off.test", "5.2.1 <eve@off.test> Mailbox disabled", 77),  # its domain is off
        (CAROL, "5.2.1 <carol@example.test> this mailbox does not receive mail", 77),
    ],
)
def test_refused_recipients_write_nothing(
    env: Env, rcpt: str, expected: str, exit_code: int
) -> None:
    status = expected.split(maxsplit=1)[0]
    assert env.deliver(rcpt) == expected
    assert env.lda.check_recipient(rcpt).dsn == status  # LMTP's RCPT: the same
    assert pipe.exit_code(status) == exit_code
    assert list(env.root.iterdir()) == []


def test_delivered_with_extension_and_usage_recorded(env: Env) -> None:
    assert env.deliver(f"alice+news@{D}") == "2.0.0 Delivered"
    (path,) = env.files()
    assert path.read_bytes().startswith(b"Return-Path: <x@other.test>\nDelivered-To: alice@")
    alice = env.store.mailboxes[ALICE].id
    assert env.store.usage[alice] == (path.stat().st_size, 1, 0)  # quota_usage via the store


@pytest.mark.parametrize(("tempfail", "status"), [(True, "4.2.2"), (False, "5.2.2")])
def test_over_quota(tmp_path: Path, tempfail: bool, status: str) -> None:
    env = Env(tmp_path, quota_full_tempfail=tempfail)
    env.store.mailboxes[BOB].quota_bytes = 200
    assert env.deliver(BOB).startswith("2.0.0")  # ~150 bytes of 200
    assert env.deliver(BOB).startswith(f"{status} <bob@example.test> ")
    assert len(env.files("bob")) == 1
    assert env.rec.entries[-1].quota


def test_spam_to_junk(env: Env) -> None:
    assert env.deliver(data=SPAM) == "2.0.0 Delivered to Junk"  # global: folder above 5.0
    assert not env.files() and len(env.files("alice", ".Junk")) == 1
    assert env.rec.entries[-1].junk


def test_spam_layers_tag_and_discard(env: Env) -> None:
    env.store.set_spam(D, Layer("tag"))
    env.store.set_spam(BOB, Layer("discard", 9.0))
    assert env.deliver(data=SPAM) == "2.0.0 Delivered"
    assert b"X-Mailwarden-Spam: yes score=9.5\n" in env.files()[0].read_bytes()
    assert env.deliver(BOB, data=SPAM) == "2.0.0 Discarded as spam"
    assert not env.files("bob")
    env.store.set_spam(D, Layer("tag", enforce=True))  # the domain now locks the mailbox out
    assert env.deliver(BOB, data=SPAM) == "2.0.0 Delivered"


def test_vacation_replies_once(env: Env) -> None:
    env.store.set_vacation(ALICE, vacation_rules.Vacation("Away", "Back on Monday."))
    assert env.deliver().startswith("2.0.0")
    assert env.deliver().startswith("2.0.0")
    assert [to for to, _ in env.sub.sent] == ["x@other.test"]
    assert b"Subject: Away" in env.sub.sent[0][1]
    assert [e.vacation for e in env.rec.entries] == ["sent", "suppressed"]


def test_store_failure_is_temporary_and_writes_nothing(env: Env) -> None:
    from mailwarden.errors import StoreUnavailable

    def down(address: str) -> None:
        raise StoreUnavailable("database down")

    env.store.recipient = down  # type: ignore[method-assign]
    assert env.deliver().startswith("4.3.0 ")
    assert list(env.root.iterdir()) == []
