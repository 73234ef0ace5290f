"""The delivery agent behind a real Postfix, read back by a real Dovecot.

One module-scoped stack: SQLite store (owned by vmail, since the pipe LDA runs as
vmail), ``mailwarden lmtpd`` on a unix socket (run as root, chowning to vmail),
Postfix with ``virtual_transport = lmtp:unix:…`` and a ``mwpipe`` pipe(8) transport
running ``mailwarden-lda`` as vmail from the test venv (/opt/mailwarden-test/venv,
built from /usr/bin/python3) with PYTHONPATH at a vmail-readable copy of ``src``, and
Dovecot with ``quota = maildir`` (contrib/dovecot/90-mailwarden-quota.conf).
``virtual_mailbox_maps`` is a catch-all texthash map so that unknown recipients reach
the LDA, which must refuse them itself.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import Cli
from tests.daemons import Daemon, start_daemon

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = Path("/opt/mailwarden-test/venv/bin/python")
PW = "s3cret-pw"


@dataclass
class Stack:
    base: Path
    root: Path
    cfg: Path
    cli: Cli
    postfix: servers.Postfix
    dovecot: servers.Dovecot
    lmtpd: Daemon
    metrics_port: int

    def send(
        self,
        rcpts: list[str],
        *,
        sender: str = "someone@outside.test",
        subject: str = "test",
        headers: dict[str, str] | None = None,
        body: str = "hello\n",
    ) -> int:
        msg = EmailMessage()
        msg["From"] = sender or "MAILER-DAEMON@outside.test"
        msg["To"] = ", ".join(rcpts)
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{time.monotonic_ns()}@outside.test>"
        for k, v in (headers or {}).items():
            msg[k] = v
        msg.set_content(body)
        mark = self.postfix.log_mark()
        import smtplib

        with smtplib.SMTP("127.0.0.1", self.postfix.smtp_port, timeout=30) as s:
            s.sendmail(sender, rcpts, msg.as_bytes())
        return mark

    def maildir(self, user: str, folder: str = "") -> Path:
        return self.root / "example.test" / user / folder

    def files(self, user: str, folder: str = "") -> list[Path]:
        d = self.maildir(user, folder)
        out = []
        for sub in ("new", "cur"):
            if (d / sub).is_dir():
                out += sorted((d / sub).iterdir())
        return out

    def maildirsize(self, user: str) -> tuple[int, int]:
        lines = (self.maildir(user) / "maildirsize").read_text().splitlines()[1:]
        return (
            sum(int(x.split()[0]) for x in lines if x.strip()),
            sum(int(x.split()[1]) for x in lines if x.strip()),
        )

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return str(r.read().decode())


def _wait_files(stack: Stack, user: str, n: int, folder: str = "", timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while len(stack.files(user, folder)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{user}/{folder}: {len(stack.files(user, folder))} < {n}\n"
                + stack.postfix.log_tail()
            )
        time.sleep(0.05)


def _sql_conf(db: Path, root: Path) -> str:
    text = (REPO / "contrib/dovecot/dovecot-sql.conf.ext.sqlite").read_text()
    for k, v in {
        "@SQLITE_PATH@": str(db),
        "@MAIL_ROOT@": str(root),
        "@MAIL_UID@": "5000",
        "@MAIL_GID@": "5000",
    }.items():
        text = text.replace(k, v)
    return text


def _start_lmtpd(cfg: Path, sock: Path, metrics_port: int, base: Path) -> Daemon:
    metrics = ["--metrics", f"127.0.0.1:{metrics_port}"]
    return start_daemon("lmtpd", cfg, f"unix:{sock}", base / "lmtpd.log", args=metrics)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    missing = servers.missing_requirements(servers.Postfix, servers.Dovecot)
    if missing or not VENV_PYTHON.exists():
        pytest.skip("cannot run real servers: " + "; ".join(missing or ["no test venv"]))
    base = servers.make_workdir("mw-lda-")
    root, dbdir, src = base / "vmail", base / "db", base / "src"
    for d in (root, dbdir):
        d.mkdir()
        os.chown(d, 5000, 5000)
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    os.system(f"chmod -R a+rX {src}")
    db = dbdir / "mail.sqlite"
    metrics_dir = base / "metrics"
    postfix = servers.Postfix(base)
    cfg = base / "mailwarden.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[mail]\nroot = "{root}"\nuid = 5000\ngid = 5000\n'
        f'[lda]\nlmtp_listen = []\nmetrics_dir = "{metrics_dir}"\nsubmit = "smtp"\n'
        f"smtp_port = {postfix.smtp_port}\n"
    )
    os.chmod(cfg, 0o644)
    cli = Cli(cfg, f"sqlite:///{db}")
    cli.ok("db", "init")
    cli.ok("domain", "add", "example.test")
    for user in ("alice", "bob", "carol", "dave"):
        cli.ok("user", "add", "--password-stdin", f"{user}@example.test", stdin=PW + "\n")
    cli.ok("user", "add", "--password-stdin", "--quota", "1K", "full@example.test", stdin=PW + "\n")
    for path in (db, *dbdir.iterdir()):
        os.chown(path, 5000, 5000)
    os.chmod(db, 0o666)  # dovecot's auth worker reads it too
    os.chmod(dbdir, 0o777)
    sock = base / "lmtp.sock"
    metrics_port = servers.free_port()
    lmtpd = _start_lmtpd(cfg, sock, metrics_port, base)
    maps = postfix.write_file("vmailbox", "@example.test ok\n", 0o644)
    transport = postfix.write_file("transport", "dave@example.test mwpipe:\n", 0o644)
    postfix.postconf(
        "-e",
        "virtual_mailbox_domains=example.test",
        f"virtual_mailbox_maps=texthash:{maps}",
        f"virtual_transport=lmtp:unix:{sock}",
        f"transport_maps=texthash:{transport}",
        "mwpipe_destination_recipient_limit=1",
        "recipient_delimiter=+",
        f"import_environment=MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C PYTHONPATH={src}",
        "export_environment=TZ MAIL_CONFIG LANG PYTHONPATH",
    )
    postfix.add_master_entry(
        "mwpipe unix - n n - 10 pipe\n  flags=Xhu user=vmail:vmail "
        # the installed script (bin/mailwarden-lda), as contrib's master.cf.lda runs it;
        # PYTHONPATH makes it import this tree's package
        f"argv={VENV_PYTHON.parent}/mailwarden-lda --config {cfg} "
        "--sender ${sender} --recipient ${recipient}"
    )
    quota_conf = (REPO / "contrib/dovecot/90-mailwarden-quota.conf").read_text()
    dovecot = servers.Dovecot(base, _sql_conf(db, root), root, extra_conf=quota_conf)
    stack = Stack(base, root, cfg, cli, postfix, dovecot, lmtpd, metrics_port)
    try:
        postfix.start()
        dovecot.start()
        yield stack
    finally:
        postfix.stop()
        dovecot.stop()
        lmtpd.stop(30)
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


def test_one_message_three_recipients_three_results(stack: Stack) -> None:
    mark = stack.send(
        ["alice@example.test", "ghost@example.test", "full@example.test"], body="x" * 2000
    )
    log = stack.postfix
    log.wait_log(r"to=<alice@example\.test>.*status=sent \(250 2\.0\.0", since=mark)
    log.wait_log(r"to=<ghost@example\.test>.*status=bounced .*5\.1\.1", since=mark)
    log.wait_log(r"to=<full@example\.test>.*status=deferred .*4\.2\.2", since=mark)
    assert len(stack.files("alice")) >= 1
    assert stack.files("full") == []


def test_dovecot_reads_over_imap_and_pop3_and_quota_agrees(stack: Stack) -> None:
    mark = stack.send(["carol@example.test"], subject="first")
    stack.send(["carol@example.test"], subject="second", body="y" * 3000)
    stack.postfix.wait_log(r"to=<carol@example\.test>.*status=sent", since=mark)
    _wait_files(stack, "carol", 2)
    imap = imaplib.IMAP4("127.0.0.1", stack.dovecot.imap_port)
    imap.login("carol@example.test", PW)
    imap.select("INBOX")
    _, data = imap.search(None, "ALL")
    ids = data[0].split()
    assert len(ids) == 2
    _, fetched = imap.fetch(b",".join(ids), "(BODY.PEEK[HEADER.FIELDS (SUBJECT DELIVERED-TO)])")
    headers = b"".join(part[1] for part in fetched if isinstance(part, tuple))
    assert b"Subject: first" in headers and b"Subject: second" in headers
    assert headers.count(b"Delivered-To: carol@example.test") == 2
    pop = poplib.POP3("127.0.0.1", stack.dovecot.pop3_port)
    pop.user("carol@example.test")
    pop.pass_(PW)
    assert pop.stat()[0] == 2
    pop.quit()

    def doveadm_usage() -> tuple[int, int]:
        out = stack.dovecot.doveadm("quota", "get", "-u", "carol@example.test").stdout
        storage = re.search(r"STORAGE\s+(\d+)", out)
        messages = re.search(r"MESSAGE\s+(\d+)", out)
        assert storage and messages, out
        return int(storage.group(1)) * 1024, int(messages.group(1))

    size, count = stack.maildirsize("carol")
    assert count == 2
    kib, n = doveadm_usage()
    assert (n, kib) == (count, -(-size // 1024) * 1024)  # doveadm rounds KiB up
    imap.store(ids[0], "+FLAGS", "\\Deleted")  # one of the two, over IMAP
    imap.expunge()
    imap.logout()
    assert stack.dovecot.doveadm("quota", "recalc", "-u", "carol@example.test").returncode == 0
    size2, count2 = stack.maildirsize("carol")
    assert count2 == 1 and size2 < size
    kib, n = doveadm_usage()
    assert (n, kib) == (count2, -(-size2 // 1024) * 1024)


def test_spam_inbox_for_one_junk_for_other(stack: Stack) -> None:
    stack.cli.ok("spam", "set", "alice@example.test", "--threshold", "10", "--action", "folder")
    stack.cli.ok("spam", "set", "bob@example.test", "--threshold", "3", "--action", "folder")
    before_a = len(stack.files("alice"))
    mark = stack.send(
        ["alice@example.test", "bob@example.test"],
        subject="cheap pills",
        headers={"X-Spam-Flag": "YES", "X-Spam-Score": "6.2"},
    )
    stack.postfix.wait_log(r"to=<bob@example\.test>.*status=sent", since=mark)
    stack.postfix.wait_log(r"to=<alice@example\.test>.*status=sent", since=mark)

    def imap_count(user: str, folder: str) -> int:
        imap = imaplib.IMAP4("127.0.0.1", stack.dovecot.imap_port)
        imap.login(user, PW)
        typ, data = imap.select(folder)
        assert typ == "OK", data
        _, found = imap.search(None, "SUBJECT", '"cheap pills"')
        subscribed = imap.lsub()[1]
        imap.logout()
        if folder == "Junk":
            assert any(b"Junk" in line for line in subscribed if line), subscribed
        return len(found[0].split())

    assert imap_count("alice@example.test", "INBOX") == 1
    assert imap_count("bob@example.test", "Junk") == 1
    assert imap_count("bob@example.test", "INBOX") == 0
    assert len(stack.files("alice")) == before_a + 1
    assert "mailwarden_lda_junk_filings_total 1.0" in stack.metrics()


def test_vacation_once_through_postfix_and_suppressed(stack: Stack) -> None:
    body = stack.base / "away.txt"
    body.write_text("I am away until Monday.\n")
    stack.cli.ok(
        "vacation", "set", "dave@example.test", "--subject", "Away", "--body-file", str(body)
    )
    # dave is delivered through the PIPE transport (mailwarden-lda as vmail)
    mark = stack.send(["dave@example.test"], sender="bob@example.test", subject="lunch?")
    log = stack.postfix
    log.wait_log(r"to=<dave@example\.test>.*relay=mwpipe.*status=sent", since=mark)
    # the reply: envelope <>, queued and delivered by Postfix to bob via lmtpd
    log.wait_log(r"from=<>", since=mark)
    log.wait_log(r"to=<bob@example\.test>.*status=sent", since=mark)
    _wait_files(stack, "bob", 1)
    replies = [p for p in stack.files("bob") if b"Auto-Submitted: auto-replied" in p.read_bytes()]
    assert len(replies) == 1
    text = replies[0].read_bytes()
    assert b"Subject: Away\n" in text and b"Return-Path: <>" in text
    for p in stack.files("dave"):
        assert p.stat().st_uid == 5000
    # second message within the interval, then the suppressed kinds
    cases = [
        {},
        {"Precedence": "bulk"},
        {"List-Id": "<list.example.test>"},
        {"Auto-Submitted": "auto-generated"},
    ]
    for i, headers in enumerate(cases):
        sender = "bob@example.test" if i == 0 else f"u{i}@example.test"
        stack.send(["dave@example.test"], sender=sender, subject=f"case {i}", headers=headers)
    _wait_files(stack, "dave", 1 + len(cases))
    time.sleep(1.0)
    replies = [p for p in stack.files("bob") if b"Auto-Submitted: auto-replied" in p.read_bytes()]
    assert len(replies) == 1
    assert "from=<>" not in log.log_text(log.log_mark() - 1)  # no further replies queued
    metrics = stack.metrics()  # pipe-mode counts folded in from the counter file
    assert re.search(r'mailwarden_lda_vacation_total\{result="sent"\} 1\.0', metrics)
    assert re.search(r'mailwarden_lda_vacation_total\{result="suppressed"\} 4\.0', metrics)


def test_pipe_unknown_recipient_bounces_with_5_1_1(stack: Stack) -> None:
    transport = stack.postfix.write_file(
        "transport", "dave@example.test mwpipe:\nnodave@example.test mwpipe:\n", 0o644
    )
    assert transport.exists()
    stack.postfix.reload()
    mark = stack.send(["nodave@example.test"])
    stack.postfix.wait_log(
        r"to=<nodave@example\.test>.*relay=mwpipe.*status=bounced.*5\.1\.1", since=mark
    )


def test_lmtpd_stops_cleanly_on_sigterm(stack: Stack, tmp_path: Path) -> None:
    sock = stack.base / "second.sock"
    proc = _start_lmtpd(stack.cfg, sock, servers.free_port(), stack.base)
    assert proc.stop(30) == 0
    assert not sock.exists()
