"""The delivery core against a real SQLite store and a temporary mail root."""

from __future__ import annotations

import errno
import io
import os
import threading
from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.delivery import quota
from mailwarden.delivery.counters import Entry, FileRecorder, fold
from mailwarden.delivery.deliver import Deliverer
from mailwarden.delivery.maildir import open_maildir
from mailwarden.pipe import lda as pipe
from mailwarden.store.db import Database
from mailwarden.store.sql import SqlStore
from tests.conftest import Cli, write_config

MSG = (
    b"From: bob@other.test\r\nTo: alice@example.test\r\nSubject: Hi\r\n"
    b"Message-ID: <m1@x>\r\n\r\nHello\r\n"
)


class Recorder:
    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def record(
        self,
        outcome: str,
        nbytes: int,
        seconds: float,
        *,
        junk: bool = False,
        quota: bool = False,
        vacation: str | None = None,
    ) -> None:
        self.entries.append(Entry(outcome, nbytes, seconds, junk, quota, vacation))


class Submitter:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, recipient: str, message: bytes) -> None:
        self.sent.append((recipient, message))


class Env:
    def __init__(self, tmp: Path, extra: str = "") -> None:
        self.root = tmp / "vmail"
        self.root.mkdir()
        self.url = f"sqlite:///{tmp}/db.sqlite"
        self.cfg = write_config(
            tmp / "c.toml",
            self.url,
            self.root,
            extra + f'[lda]\nmetrics_dir = "{tmp}"\nlmtp_listen = []\n',
        )
        self.cli = Cli(self.cfg, self.url)
        self.cli.ok("db", "init")
        self.cli.ok("domain", "add", "example.test")
        for user in ("alice", "bob"):
            self.cli.ok("user", "add", "--password-stdin", f"{user}@example.test", stdin="pw\n")
        self.settings = config.load(str(self.cfg))
        self.db = Database(self.url)
        self.rec = Recorder()
        self.sub = Submitter()
        self.store = SqlStore(self.db)
        self.lda = Deliverer(self.settings, self.store, self.rec, self.sub)  # type: ignore[arg-type]

    def new(self, user: str = "alice", folder: str = "") -> list[Path]:
        d = self.root / "example.test" / user / folder / "new"
        return sorted(d.iterdir()) if d.exists() else []

    def deliver(
        self, rcpt: str = "alice@example.test", data: bytes = MSG, sender: str = "bob@other.test"
    ) -> str:
        return self.lda.deliver(sender, rcpt, data).dsn


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_delivers_with_headers_and_lf(env: Env) -> None:
    assert env.deliver("Alice+Tag@Example.TEST") == "2.0.0"
    (path,) = env.new()
    data = path.read_bytes()
    assert data.startswith(b"Return-Path: <bob@other.test>\nDelivered-To: alice@example.test\n")
    assert b"\r" not in data
    assert data.endswith(b"\n\nHello\n")
    assert f",S={len(data)}," in path.name
    assert env.rec.entries[-1].outcome == "delivered"
    assert env.rec.entries[-1].nbytes == len(data)


@pytest.mark.parametrize(
    ("rcpt", "dsn"),
    [
        ("nobody@example.test", "5.1.1"),
        ("alice@other.test", "5.1.1"),
        ("../../etc@example.test", "5.1.1"),  # would escape the mail root: never parses
        ("a/b@example.test", "5.1.1"),
        ("not an address", "5.1.1"),
    ],
)
def test_unknown_recipients(env: Env, rcpt: str, dsn: str) -> None:
    assert env.deliver(rcpt) == dsn
    assert not env.new()
    assert sorted(p.name for p in env.root.iterdir()) == []


def test_inactive_mailbox(env: Env) -> None:
    env.cli.ok("user", "add", "--password-stdin", "--inactive", "carol@example.test", stdin="p\n")
    assert env.deliver("carol@example.test") == "5.2.1"


def test_loop_refused(env: Env) -> None:
    looped = b"Delivered-To: alice@example.test\n" + MSG
    assert env.deliver(data=looped) == "5.4.6"
    assert not env.new()
    assert env.deliver("bob@example.test", data=looped) == "2.0.0"


@pytest.mark.parametrize(("tempfail", "dsn", "code"), [(True, "4.2.2", 75), (False, "5.2.2", 77)])
def test_over_quota(tmp_path: Path, tempfail: bool, dsn: str, code: int) -> None:
    env = Env(tmp_path, extra=f"quota_full_tempfail = {str(tempfail).lower()}\n")
    with env.db.transaction() as tx:
        tx.execute("UPDATE mailboxes SET quota_bytes = 250 WHERE address = 'alice@example.test'")
    assert env.deliver() == "2.0.0"
    assert env.deliver() == dsn
    assert len(env.new()) == 1
    assert env.rec.entries[-1].quota
    assert pipe.exit_code(dsn) == code
    with env.db.read() as tx:
        row = tx.one("SELECT bytes, messages FROM quota_usage")
    assert row is not None and row["messages"] == 1


def test_quota_usage_and_warning_once(env: Env) -> None:
    size = len(b"Return-Path: <bob@other.test>\nDelivered-To: alice@example.test\n") + len(
        MSG.replace(b"\r\n", b"\n")
    )
    with env.db.transaction() as tx:
        tx.execute(
            "UPDATE mailboxes SET quota_bytes = ? WHERE address = 'alice@example.test'",
            (size * 100 // 95,),
        )
    assert env.deliver() == "2.0.0"  # crosses 90 %: one warning message
    files = env.new()
    assert len(files) == 2
    warning = [p for p in files if b"Subject: Your mailbox is 90% full" in p.read_bytes()]
    assert warning
    on_disk = sum(p.stat().st_size for p in files)
    assert on_disk > size  # the warning itself counts against the quota
    with env.db.read() as tx:
        row = tx.one("SELECT bytes, messages, warned_percent FROM quota_usage")
    # quota_usage equals maildirsize, warning included (the policy daemon reads the table)
    assert row == {"bytes": on_disk, "messages": 2, "warned_percent": 90}
    text = (env.root / "example.test/alice/maildirsize").read_text().splitlines()
    assert sum(int(line.split()[0]) for line in text[1:]) == on_disk


def test_spam_inbox_for_one_junk_for_other(env: Env) -> None:
    env.cli.ok("spam", "set", "alice@example.test", "--threshold", "10")
    env.cli.ok("spam", "set", "bob@example.test", "--threshold", "3", "--action", "folder")
    spam = b"X-Spam-Flag: YES\nX-Spam-Score: 6.5\n" + MSG
    assert env.deliver("alice@example.test", spam) == "2.0.0"
    assert env.deliver("bob@example.test", spam) == "2.0.0"
    assert len(env.new("alice")) == 1
    assert not env.new("bob")
    assert len(env.new("bob", ".Junk")) == 1
    assert (env.root / "example.test/bob/subscriptions").read_text() == "Junk\n"
    assert [e.junk for e in env.rec.entries] == [False, True]


def test_spam_tag_and_discard(env: Env) -> None:
    env.cli.ok("spam", "set", "alice@example.test", "--action", "tag")
    env.cli.ok("spam", "set", "bob@example.test", "--action", "discard")
    spam = b"X-Spam-Flag: YES\nX-Spam-Score: 9\n" + MSG
    assert env.deliver("alice@example.test", spam) == "2.0.0"
    assert env.deliver("bob@example.test", spam) == "2.0.0"
    assert b"X-Mailwarden-Spam: yes score=9\n" in env.new("alice")[0].read_bytes()
    assert not env.new("bob")
    assert env.rec.entries[-1].outcome == "discarded"


def test_vacation_once_per_interval(env: Env, tmp_path: Path) -> None:
    body = tmp_path / "body.txt"
    body.write_text("I am away.\n")
    env.cli.ok(
        "vacation", "set", "alice@example.test", "--subject", "Away", "--body-file", str(body)
    )
    assert env.deliver() == "2.0.0"
    assert env.deliver() == "2.0.0"
    assert len(env.sub.sent) == 1
    rcpt, reply = env.sub.sent[0]
    assert rcpt == "bob@other.test"
    for needle in (
        b"Auto-Submitted: auto-replied",
        b"Subject: Away\n",  # the configured subject, not "Auto: Hi" (RFC 5230 §4.4)
        b"In-Reply-To: <m1@x>",
        b"References: <m1@x>",
        b"To: bob@other.test",
        b"I am away.",
    ):
        assert needle in reply
    assert [e.vacation for e in env.rec.entries] == ["sent", "suppressed"]
    # the reply itself, delivered back to a mailbox with a vacation, gets no reply
    assert env.deliver(data=reply, sender="") == "2.0.0"
    assert len(env.sub.sent) == 1


def test_vacation_not_for_spam(env: Env, tmp_path: Path) -> None:
    body = tmp_path / "b.txt"
    body.write_text("away")
    env.cli.ok(
        "vacation", "set", "alice@example.test", "--subject", "Away", "--body-file", str(body)
    )
    assert env.deliver(data=b"X-Spam-Flag: YES\n" + MSG) == "2.0.0"
    assert not env.sub.sent


def test_store_unreachable_writes_nothing(tmp_path: Path) -> None:
    env = Env(tmp_path)
    os.unlink(tmp_path / "db.sqlite")
    env.db.close()
    assert env.deliver() == "4.3.0"
    assert not list(env.root.iterdir())


def test_bad_input_is_delivered_unchanged(env: Env) -> None:
    cases = [
        b"no header at all, just text\nand more\n",
        b"Subject: no separator",
        b"Subject: nul\n\nbody \x00 with nul\n",
        b"Subject: \xc3\xa9 8bit \xff\n\n\xe2\x82\xac\n",
        b"X-Long: " + b"x" * 100_000 + b"\n\nbody\n",
    ]
    for data in cases:
        assert env.deliver(data=data) == "2.0.0"
    bodies = sorted(p.read_bytes().split(b"\n", 2)[2] for p in env.new())
    assert bodies == sorted(c.replace(b"\r\n", b"\n") for c in cases)


def test_fifty_megabytes(env: Env) -> None:
    line = b"y" * 76 + b"\r\n"
    data = b"Subject: big\r\n\r\n" + line * (50 * 1024 * 1024 // len(line))
    assert env.deliver(data=data) == "2.0.0"
    (path,) = env.new()
    assert path.stat().st_size == len(data.replace(b"\r\n", b"\n")) + 63


def test_enospc_is_temporary(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        if len(data) > 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    assert env.deliver() == "4.3.1"
    monkeypatch.undo()
    assert not env.new()
    assert not os.listdir(env.root / "example.test/alice/tmp")


def test_symlink_planted_is_refused(env: Env, tmp_path: Path) -> None:
    (env.root / "example.test").mkdir()
    target = tmp_path / "stolen"
    target.mkdir()
    (env.root / "example.test/alice").symlink_to(target)
    assert env.deliver() == "4.3.0"
    assert not list(target.iterdir())


def test_concurrent_deliveries_keep_maildirsize_exact(env: Env) -> None:
    with env.db.transaction() as tx:
        tx.execute(
            "UPDATE mailboxes SET quota_bytes = 10000000 WHERE address = 'alice@example.test'"
        )
    threads = [
        threading.Thread(target=env.deliver, args=("alice@example.test", MSG + b"x" * i))
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(env.new()) == 20
    path = env.root / "example.test/alice/maildirsize"
    lines = path.read_text().splitlines()
    used = (sum(int(x.split()[0]) for x in lines[1:]), sum(int(x.split()[1]) for x in lines[1:]))
    with (
        open_maildir(str(env.root), str(env.root / "example.test/alice"), None) as box,
        box.lock(shared=False),
    ):
        sf = quota.recalculate(box, 10000000, 0)
    assert used == (sf.bytes, sf.messages) == (sum(p.stat().st_size for p in env.new()), 20)


# --- pipe adapter ---------------------------------------------------------------------


def _pipe(env: Env, *argv: str, data: bytes = MSG) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = pipe.main(["--config", str(env.cfg), *argv], io.BytesIO(data), out, err)
    return code, out.getvalue()


@pytest.mark.parametrize(
    ("argv", "code", "prefix"),
    [
        (["--sender", "b@x.test", "--recipient", "alice@example.test"], 0, "2.0.0"),
        (["-f", "b@x.test", "-d", "nobody@example.test"], 67, "5.1.1"),
        (["--recipient", "alice@example.test"], 75, "4.3.5"),  # usage error: never bounce
        (["--bogus", "x"], 75, "4.3.5"),
    ],
)
def test_pipe_exit_codes(env: Env, argv: list[str], code: int, prefix: str) -> None:
    got, out = _pipe(env, *argv)
    assert (got, out.split()[0]) == (code, prefix)
    assert len(out.splitlines()) == 1


def test_pipe_unexpected_error_exits_75(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(pipe, "deliver_here", boom)
    assert _pipe(env, "-f", "b@x.test", "-d", "alice@example.test")[0] == 75


def test_pipe_counts_go_to_counter_file(env: Env, tmp_path: Path) -> None:
    _pipe(env, "-f", "b@x.test", "-d", "alice@example.test")
    _pipe(env, "-f", "b@x.test", "-d", "nobody@example.test")
    seen: list[Entry] = []
    assert fold(str(tmp_path), seen.append) == 2
    assert [e.outcome for e in seen] == ["delivered", "unknown"]
    assert fold(str(tmp_path), seen.append) == 0  # each line counted once


def test_file_recorder_never_raises(tmp_path: Path) -> None:
    FileRecorder(str(tmp_path / "missing" / "dir")).record("delivered", 1, 0.1)


@pytest.mark.parametrize(
    ("data", "stuffed"),
    [
        (b"a\n.b\n", b"a\r\n..b\r\n.\r\n"),
        (b".x", b"..x\r\n.\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    ],
)
def test_dot_stuff(data: bytes, stuffed: bytes) -> None:
    assert pipe._dot_stuff(data) == stuffed


def test_recorder_failure_keeps_the_outcome(env: Env) -> None:
    """Metrics fail after the message is in new/: still 2.0.0 (a 4.3.0 would duplicate it)."""

    class Broken(Recorder):
        def record(self, *a: object, **k: object) -> None:
            raise RuntimeError("metrics bug")

    env.lda.recorder = Broken()
    assert env.deliver() == "2.0.0"
    assert len(env.new()) == 1


def test_maildirsize_failure_after_delivery_is_not_a_retry(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message is in new/: a failing maildirsize append must not answer 4xx (dupes)."""
    from mailwarden.delivery import quota as quota_mod

    def broken(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(quota_mod, "append", broken)
    assert env.deliver() == "2.0.0"
    assert len(env.new()) == 1
