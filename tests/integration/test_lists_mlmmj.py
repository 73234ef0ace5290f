"""Mailing lists end to end: real mlmmj behind a real Postfix, lists made by the CLI.

Postfix reads the schema through contrib/postfix/sqlite/*.cf (list_transport_maps.cf
included) and hands list addresses to the ``mlmmj`` pipe service of
contrib/mlmmj/master.cf.mlmmj, run as the system user ``mlmmj`` (the suite runs as root;
scripts/install-deps.sh creates the user). mlmmj sends list mail back to this Postfix
(``[lists] smtp``), which delivers the members' copies with virtual(8) into Maildirs
below the mail root: every assertion reads what really arrived.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import re
import shutil
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import Cli, write_config
from tests.contrib import CONTRIB, placeholders, render, render_file
from tests.servers import Postfix, make_workdir, missing_requirements

pytestmark = pytest.mark.integration

DOMAIN = "example.test"
MAPS = (
    "virtual_mailbox_domains",
    "virtual_mailbox_maps",
    "virtual_alias_maps",
    "transport_maps",
    "list_transport_maps",
)


def _requirements() -> list[str]:
    missing = missing_requirements(Postfix)
    if not Path("/usr/bin/mlmmj-receive").is_file():
        missing.append("mlmmj (apt-get install mlmmj)")
    try:
        pwd.getpwnam("mlmmj")
    except KeyError:
        missing.append("user mlmmj (scripts/install-deps.sh)")
    return missing


@dataclass
class ListStack:
    base: Path
    root: Path
    spool: Path
    cli: Cli
    postfix: Postfix

    def send(self, sender: str, to: str, subject: str, body: str = "hello\n") -> int:
        mark = self.postfix.log_mark()
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{time.time_ns()}@{DOMAIN}>"
        msg.set_content(body)
        with smtplib.SMTP("127.0.0.1", self.postfix.smtp_port, timeout=30) as smtp:
            smtp.send_message(msg, from_addr=sender, to_addrs=[to])
        return mark

    def inbox(self, user: str) -> list[EmailMessage]:
        new = self.root / DOMAIN / user / "new"
        if not new.is_dir():
            return []
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(new.iterdir())
        ]

    def wait_inbox(self, user: str, count: int, timeout: float = 30.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.inbox(user)
            if len(found) >= count:
                return found
            time.sleep(0.2)
        raise AssertionError(
            f"{user}: {len(self.inbox(user))} messages, wanted {count}\n"
            + self.postfix.log_text()[-4000:]
        )

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until Postfix's queue is empty and no mlmmj work is left in the spool."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            busy = not self.postfix.queue_empty() or any(
                p.is_file() for p in self.spool.glob("*/*/queue/*")
            )
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 2.0:
                return
            time.sleep(0.2)
        raise AssertionError("mail still moving:\n" + self.postfix.log_text()[-4000:])


@pytest.fixture
def stack() -> Iterator[ListStack]:
    if missing := _requirements():
        pytest.skip(f"mailing-list stack not usable: {', '.join(missing)}")
    base = make_workdir("mailwarden-lists-")
    try:
        yield _build(base)
    finally:
        for server in list(_STARTED):
            server.stop()
            _STARTED.remove(server)
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


_STARTED: list[Postfix] = []


def _build(base: Path) -> ListStack:
    postfix = Postfix(base)
    dbdir = base / "db"
    dbdir.mkdir(mode=0o777)
    os.chmod(dbdir, 0o777)  # Postfix (user postfix) reads the SQLite file, WAL included
    url = f"sqlite:///{dbdir}/mw.sqlite"
    root = base / "vmail"
    root.mkdir()
    os.chown(root, 5000, 5000)
    spool = base / "mlmmj"
    extra = f'[lists]\nspool = "{spool}"\nuser = "mlmmj"\nsmtp = "127.0.0.1:{postfix.smtp_port}"\n'
    cli = Cli(write_config(base / "mw.toml", url, root, extra), url)
    cli.ok("db", "init")
    cli.ok("domain", "add", DOMAIN)
    for path in dbdir.iterdir():
        os.chmod(path, 0o666)
    map_dir = postfix.config_dir / "mailwarden"
    values = placeholders(url, mail_root=root, postfix_dir=map_dir)
    for name in MAPS:
        path = render_file(
            f"postfix/sqlite/{name}.cf", values, map_dir / f"{name}.cf", group="postfix"
        )
        past = time.time() - 60
        os.utime(path, (past, past))
    wrapper = base / "mlmmj-receive-tempfail"
    shutil.copy(CONTRIB / "mlmmj/mlmmj-receive-tempfail", wrapper)
    os.chmod(wrapper, 0o755)
    master = (
        (CONTRIB / "mlmmj/master.cf.mlmmj")
        .read_text()
        .replace("/var/spool/mlmmj/", f"{spool}/")
        .replace("/usr/local/lib/mailwarden/mlmmj-receive-tempfail", str(wrapper))
    )
    entry = "\n".join(ln for ln in master.splitlines() if ln and not ln.startswith("#"))
    postfix.add_master_entry(render(entry, values))
    main = render((CONTRIB / "mlmmj/main.cf.mlmmj").read_text(), values)
    settings = _main_cf(main)
    settings["transport_maps"] = settings["transport_maps"].replace("proxy:", "")
    postfix.postconf(
        "-e",
        *(f"{k}={v}" for k, v in settings.items()),
        f"virtual_mailbox_domains=sqlite:{map_dir}/virtual_mailbox_domains.cf",
        f"virtual_mailbox_maps=sqlite:{map_dir}/virtual_mailbox_maps.cf",
        f"virtual_alias_maps=sqlite:{map_dir}/virtual_alias_maps.cf",
        f"virtual_mailbox_base={root}",
        "virtual_uid_maps=static:5000",
        "virtual_gid_maps=static:5000",
        "virtual_transport=virtual",
        "smtpd_recipient_restrictions=reject_unlisted_recipient",
        "bounce_queue_lifetime=0",
        "maximal_queue_lifetime=0",
    )
    _STARTED.append(postfix)
    postfix.start()
    return ListStack(base, root, spool, cli, postfix)


def _main_cf(text: str) -> dict[str, str]:
    """``name = value`` settings of a main.cf fragment (continuation lines joined)."""
    settings: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and name:
            settings[name] += " " + line.strip()
            continue
        name, _, value = line.partition("=")
        name = name.strip()
        settings[name] = value.strip()
    return settings


def _users(stack: ListStack, *names: str) -> None:
    for name in names:
        stack.cli.ok("user", "add", f"{name}@{DOMAIN}", "--password-stdin", stdin="pw\n")


def test_post_from_a_member_reaches_every_member_with_list_headers(stack: ListStack) -> None:
    _users(stack, "alice", "bob", "owner")
    stack.cli.ok("list", "add", f"team@{DOMAIN}", "--owner", f"owner@{DOMAIN}")
    stack.cli.ok("list", "subscribe", f"team@{DOMAIN}", f"alice@{DOMAIN}", f"bob@{DOMAIN}")
    assert (stack.spool / DOMAIN / "team").stat().st_uid == pwd.getpwnam("mlmmj").pw_uid
    stack.send(f"alice@{DOMAIN}", f"team@{DOMAIN}", "first post")
    for user in ("alice", "bob"):
        (msg,) = stack.wait_inbox(user, 1)
        assert msg["Subject"] == "first post"
        assert msg["List-Id"] == "<team.example.test>"
        assert msg["List-Unsubscribe"] == "<mailto:team+unsubscribe@example.test>"
        assert msg["List-Post"] == "<mailto:team@example.test>"
        assert msg["X-Loop"] == "team@example.test"
    stack.settle()
    assert stack.inbox("owner") == []


def test_post_from_a_non_member_is_denied_not_distributed(stack: ListStack) -> None:
    _users(stack, "alice", "bob", "carol", "owner")
    stack.cli.ok("list", "add", f"team@{DOMAIN}", "--owner", f"owner@{DOMAIN}")
    stack.cli.ok("list", "subscribe", f"team@{DOMAIN}", f"alice@{DOMAIN}", f"bob@{DOMAIN}")
    stack.send(f"carol@{DOMAIN}", f"team@{DOMAIN}", "let me in")
    (denial,) = stack.wait_inbox("carol", 1)
    assert "denied" in str(denial["Subject"]).lower()
    stack.settle()
    assert stack.inbox("alice") == [] and stack.inbox("bob") == []


def test_subscribe_by_mail_with_confirmation(stack: ListStack) -> None:
    _users(stack, "dave", "owner")
    stack.cli.ok("list", "add", f"team@{DOMAIN}", "--owner", f"owner@{DOMAIN}")
    stack.send(f"dave@{DOMAIN}", f"team+subscribe@{DOMAIN}", "subscribe")
    (confirm,) = stack.wait_inbox("dave", 1)
    reply_to = str(confirm["Reply-To"])  # team+confsub-<cookie>-dave=example.test@...
    assert re.fullmatch(r"team\+confsub-[0-9a-f]+-dave=example\.test@example\.test", reply_to)
    assert "dave@example.test" not in stack.cli.ok("list", "members", f"team@{DOMAIN}")
    stack.send(f"dave@{DOMAIN}", reply_to, "Re: confirm")
    stack.wait_inbox("dave", 2)  # the welcome
    deadline = time.monotonic() + 20
    while "dave@example.test" not in stack.cli.ok("list", "members", f"team@{DOMAIN}"):
        assert time.monotonic() < deadline, "dave never became a member"
        time.sleep(0.3)
    stack.send(f"dave@{DOMAIN}", f"team@{DOMAIN}", "hello all")
    msgs = stack.wait_inbox("dave", 3)  # confirmation, welcome, the post (Maildir names
    # of one second do not sort by arrival, so look for the post among them)
    assert "hello all" in [str(m["Subject"]) for m in msgs]


def test_a_loop_between_two_lists_does_not_multiply(stack: ListStack) -> None:
    _users(stack, "erin", "frank", "owner")
    for name in ("loop-a", "loop-b"):
        stack.cli.ok("list", "add", f"{name}@{DOMAIN}", "--owner", f"owner@{DOMAIN}", "--open")
    stack.cli.ok("list", "subscribe", f"loop-a@{DOMAIN}", f"erin@{DOMAIN}", f"loop-b@{DOMAIN}")
    stack.cli.ok("list", "subscribe", f"loop-b@{DOMAIN}", f"frank@{DOMAIN}", f"loop-a@{DOMAIN}")
    mark = stack.send(f"erin@{DOMAIN}", f"loop-a@{DOMAIN}", "round and round")
    stack.wait_inbox("erin", 1)
    stack.wait_inbox("frank", 1)
    stack.settle()
    time.sleep(3)
    stack.settle()
    assert len(stack.inbox("erin")) == 1
    assert len(stack.inbox("frank")) == 1
    # The pipe's D flag: loop-a's own Delivered-To comes back, Postfix refuses it and the
    # DSN goes to loop-b's bounce address (mlmmj counts it), not to erin.
    log = stack.postfix.log_text(mark)
    assert "mail forwarding loop for loop-a@example.test" in log
    assert "to=<loop-b+bounces-" in log


def test_a_post_carrying_the_lists_x_loop_is_discarded_silently(stack: ListStack) -> None:
    """The second guard (control/access): a post that already went through this list,
    with the Delivered-To lines gone (another MTA, a forwarder), is dropped unanswered."""
    _users(stack, "erin", "frank", "carol", "owner")
    stack.cli.ok("list", "add", f"team@{DOMAIN}", "--owner", f"owner@{DOMAIN}")
    stack.cli.ok("list", "subscribe", f"team@{DOMAIN}", f"erin@{DOMAIN}", f"frank@{DOMAIN}")
    for sender in ("erin", "carol"):  # a member, and a non-member: no denial reply either
        msg = EmailMessage()
        msg["From"] = f"{sender}@{DOMAIN}"
        msg["To"] = f"team@{DOMAIN}"
        msg["Subject"] = "seen before"
        msg["X-Loop"] = f"team@{DOMAIN}"
        msg.set_content("again\n")
        with smtplib.SMTP("127.0.0.1", stack.postfix.smtp_port, timeout=30) as smtp:
            smtp.send_message(msg)
    stack.send(f"frank@{DOMAIN}", f"team@{DOMAIN}", "fresh post")
    stack.wait_inbox("erin", 1)
    stack.settle()
    subjects = [m["Subject"] for m in stack.inbox("erin") + stack.inbox("frank")]
    assert subjects == ["fresh post", "fresh post"]
    assert stack.inbox("carol") == []
    log = (stack.spool / DOMAIN / "team" / "mlmmj.operation.log").read_text()
    assert log.count('with header "X-Loop: team@example.test" was discarded') == 2


def test_a_bounce_storm_stays_with_mlmmj(stack: ListStack) -> None:
    """20 members whose mail bounces: the DSNs go to the list's VERP bounce addresses
    (mlmmj-bounce records them), never to the poster or the owner."""
    _users(stack, "alice", "owner")
    # outside.test is accepted, then its delivery fails (nothing listens on port 9) and
    # with maximal_queue_lifetime=0 every copy bounces at once: one DSN per ghost.
    stack.cli.ok("domain", "add", "outside.test", "--relay", "--transport", "smtp:[127.0.0.1]:9")
    stack.cli.ok("list", "add", f"team@{DOMAIN}", "--owner", f"owner@{DOMAIN}")
    ghosts = [f"ghost{n}@outside.test" for n in range(20)]
    stack.cli.ok("list", "subscribe", f"team@{DOMAIN}", f"alice@{DOMAIN}", *ghosts)
    mark = stack.send(f"alice@{DOMAIN}", f"team@{DOMAIN}", "to the void")
    stack.wait_inbox("alice", 1)
    stack.settle(60)
    bounces = stack.postfix.log_text(mark).count("relay=mlmmj")
    assert bounces >= 1 + len(ghosts), stack.postfix.log_text(mark)[-4000:]
    assert len(stack.inbox("alice")) == 1
    assert stack.inbox("owner") == []
    recorded = list((stack.spool / DOMAIN / "team" / "bounce").iterdir())
    assert len(recorded) >= len(ghosts)


def test_a_missing_list_directory_defers_until_sync(stack: ListStack) -> None:
    """mlmmj cannot take the mail: Postfix keeps it (4.x), nothing bounces; after
    ``list sync`` rebuilds the directory the queued post goes out."""
    _users(stack, "alice", "owner")
    stack.cli.ok("list", "add", f"team@{DOMAIN}", "--owner", f"owner@{DOMAIN}")
    stack.cli.ok("list", "subscribe", f"team@{DOMAIN}", f"alice@{DOMAIN}")
    shutil.rmtree(stack.spool / DOMAIN / "team")
    stack.postfix.postconf("-e", "maximal_queue_lifetime=1h", "bounce_queue_lifetime=1h")
    stack.postfix.reload()
    mark = stack.send(f"alice@{DOMAIN}", f"team@{DOMAIN}", "kept")
    stack.postfix.wait_log(r"to=<team@example\.test>, relay=mlmmj.*status=deferred", since=mark)
    assert stack.inbox("alice") == []
    stack.cli.ok("list", "sync")
    stack.postfix.flush()
    (msg,) = stack.wait_inbox("alice", 1)
    assert msg["Subject"] == "kept"
