"""policyd through real MTAs: Postfix 3.7 with contrib/postfix/main.cf.policy, and
Exim 4.96 ``-bh`` with contrib/exim/policy.conf, on a real MariaDB.

The daemon runs as a subprocess (``python -m mailwarden.policyd``), as in production.
Authenticated sessions and client addresses in Postfix use XCLIENT (LOGIN=, ADDR=),
which sets exactly the ``sasl_username``/``client_address`` attributes that SASL AUTH
would; in Exim, ``-bh`` with ``-oMaa/-oMai`` does the same.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, write_config
from tests.contrib import main_cf_settings
from tests.daemons import start_daemon

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"


class Policyd:
    """``python -m mailwarden.policyd`` on a free port; stopped with SIGTERM."""

    def __init__(self, config: Path, log: Path) -> None:
        from tests.servers import free_port

        self.port = free_port()
        self.metrics_port = free_port()
        self.log = log
        self.daemon = start_daemon(
            "policyd",
            config,
            f"127.0.0.1:{self.port}",
            log,
            args=["--metrics", f"127.0.0.1:{self.metrics_port}"],
        )

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            return str(r.read().decode())

    def stop(self) -> None:
        self.daemon.stop(10)

    @property
    def alive(self) -> bool:
        return self.daemon.alive


def start_policyd(base: Path, url: str, extra: str = "") -> tuple[Cli, Policyd]:
    """A database with the schema, a config (cache_ttl 1 s) and a running daemon."""
    (base / "vmail").mkdir(exist_ok=True)
    cfg = write_config(
        base / "policyd.toml",
        url,
        base / "vmail",
        "[policy]\ncache_ttl = 1.0\nmax_recipients = 5\nrequest_timeout = 5.0\n" + extra,
    )
    cli = Cli(cfg, url)
    cli.ok("db", "init")
    return cli, Policyd(cfg, base / "policyd.log")


def seed(cli: Cli) -> None:
    for args in (
        ("domain", "add", "example.test"),
        ("domain", "add", "other.test"),
        ("domain", "add", "alias.test", "--alias-of", "example.test"),
        ("domain", "add", "*.wild.test"),
    ):
        cli.ok(*args)
    cli.ok("user", "add", "w@a.wild.test", "--password-stdin", stdin="pw")
    for user in ("alice@example.test", "bob@example.test", "carol@example.test"):
        cli.ok("user", "add", user, "--password-stdin", stdin="pw")
    cli.ok("user", "add", "full@example.test", "--password-stdin", "--quota", "1M", stdin="pw")
    cli.ok("user", "add", "dan@other.test", "--password-stdin", stdin="pw")
    cli.ok("alias", "add", "@example.test", "alice@example.test")
    cli.ok("ratelimit", "set", "carol@example.test", "--per", "hour", "--messages", "1")
    sql(
        cli,
        "INSERT INTO quota_usage (mailbox_id, bytes, messages) SELECT id, 1048576, 1 "
        "FROM mailboxes WHERE address = 'full@example.test'",
    )


def sql(cli: Cli, statement: str) -> None:
    from mailwarden.store.db import Database

    db = Database(cli.url)
    with db.transaction() as tx:
        tx.execute(statement)
    db.close()


@pytest.fixture(scope="module")
def env(mariadb: object) -> Iterator[dict[str, object]]:
    from tests.servers import Postfix, make_workdir

    base = make_workdir("mw-policy-")
    url = mariadb.create_database("mwpolicy", "mwpolicy", "pw")  # type: ignore[attr-defined]
    cli, daemon = start_policyd(base, url)
    seed(cli)
    postfix = Postfix(base, main_cf_extra=postfix_settings(daemon.port))
    postfix.start()
    yield {"cli": cli, "daemon": daemon, "postfix": postfix, "base": base, "db": mariadb}
    postfix.stop()
    daemon.stop()
    if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
        shutil.rmtree(base, ignore_errors=True)


def postfix_settings(port: int) -> dict[str, str]:
    """contrib/postfix/main.cf.policy, pointed at the test daemon, plus XCLIENT."""
    text = (CONTRIB / "postfix" / "main.cf.policy").read_text()
    settings = main_cf_settings(text.replace("inet:127.0.0.1:10040", f"inet:127.0.0.1:{port}"))
    settings["smtpd_authorized_xclient_hosts"] = "127.0.0.0/8"
    # accepted mail is dropped here (nothing leaves the machine): with the error:
    # transports of the test instance smtpd would refuse every RCPT itself
    settings["default_transport"] = "discard:policy test"
    settings["relay_transport"] = "discard:policy test"
    return settings


def smtp(postfix: object, *, login: str = "", addr: str = "") -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30)  # type: ignore[attr-defined]
    s.ehlo("client.test")
    attrs = " ".join(
        a for a in (f"LOGIN={login}" if login else "", f"ADDR={addr}" if addr else "") if a
    )
    if attrs:
        code, msg = s.docmd("XCLIENT", attrs)
        assert code == 220, msg
        s.ehlo("client.test")
    return s


def rcpt(s: smtplib.SMTP, address: str) -> tuple[int, str]:
    code, msg = s.docmd(f"RCPT TO:<{address}>")
    return code, msg.decode(errors="replace")


def session(postfix: object, sender: str, rcpts: list[str], **kw: str) -> list[tuple[int, str]]:
    s = smtp(postfix, **kw)
    try:
        code, msg = s.docmd(f"MAIL FROM:<{sender}>")
        assert code == 250, msg
        return [rcpt(s, r) for r in rcpts]
    finally:
        s.close()


# ---------------------------------------------------------------------------- Postfix

TRICKS = [
    "victim@else.test",
    '"victim@else.test"@example.test',
    "@example.test:victim@else.test",
    "victim%else.test@example.test",
    "else.test!victim@example.test",
    "victim@else.test.",
    "VICTIM@ELSE.TEST",
    "victim@sub.example.test",
    "victim@evil-example.test",
]


def test_postfix_unauthenticated_relay_refused(env: dict[str, object]) -> None:
    replies = session(env["postfix"], "s@outside.test", TRICKS)
    for address, (code, msg) in zip(TRICKS, replies, strict=True):
        assert code >= 500, (address, code, msg)
        assert "Relay access denied" in msg or code == 501, (address, code, msg)


def test_postfix_recipients(env: dict[str, object]) -> None:
    replies = session(
        env["postfix"],
        "s@outside.test",
        [
            "alice@example.test",
            "nobody@other.test",
            "whatever@example.test",
            "bob@alias.test",
            "full@example.test",
            "dan+tag@other.test",
        ],
    )
    codes = [c for c, _ in replies]
    assert codes == [250, 550, 250, 250, 452, 250], replies
    assert "5.1.1" in replies[1][1]
    assert "4.2.2" in replies[4][1]


def test_postfix_wildcard_domain(env: dict[str, object]) -> None:
    """*.wild.test hosts its subdomains (recipients checked), not wild.test itself."""
    rcpts = ["w@a.wild.test", "nobody@a.wild.test", "x@wild.test", "x@a.notwild.test"]
    replies = session(env["postfix"], "s@outside.test", rcpts)
    assert [c for c, _ in replies] == [250, 550, 554, 554], replies
    assert "5.1.1" in replies[1][1]
    assert "Relay access denied" in replies[2][1] and "Relay access denied" in replies[3][1]


def test_postfix_authenticated_relay_and_sendas(env: dict[str, object]) -> None:
    login = "alice@example.test"
    assert session(env["postfix"], login, ["friend@else.test"], login=login)[0][0] == 250
    code, msg = session(env["postfix"], "bob@example.test", ["friend@else.test"], login=login)[0]
    assert code == 553 and "5.7.1" in msg, msg


def test_postfix_relay_network_and_expiry(env: dict[str, object]) -> None:
    cli = env["cli"]
    assert isinstance(cli, Cli)
    cli.ok("relay", "add", "192.0.2.0/24", "--expires", "1h")
    time.sleep(1.2)  # the relay networks are cached for cache_ttl (1 s)
    assert session(env["postfix"], "s@x.test", ["friend@else.test"], addr="192.0.2.7")[0][0] == 250
    sql(cli, "UPDATE relay_networks SET expires_at = 1 WHERE network = '192.0.2.0/24'")
    time.sleep(1.2)
    code, msg = session(env["postfix"], "s@x.test", ["friend@else.test"], addr="192.0.2.7")[0]
    assert code == 554, msg


def test_postfix_recipient_limit(env: dict[str, object]) -> None:
    rcpts = [f"r{i}@example.test" for i in range(6)]
    codes = [c for c, _ in session(env["postfix"], "s@outside.test", rcpts)]
    assert codes == [250] * 5 + [452]


def send(postfix: object, sender: str, rcpts: list[str], **kw: str) -> tuple[int, str]:
    s = smtp(postfix, **kw)
    try:
        s.docmd(f"MAIL FROM:<{sender}>")
        for r in rcpts:
            code, msg = rcpt(s, r)
            if code != 250:
                return code, msg
        code, raw = s.data(b"Subject: test\r\n\r\nhello\r\n")
        return code, raw.decode(errors="replace")
    finally:
        s.close()


def test_postfix_rate_limit_reached_and_reset(env: dict[str, object]) -> None:
    cli, pf = env["cli"], env["postfix"]
    assert isinstance(cli, Cli)
    login = "carol@example.test"
    assert send(pf, login, ["friend@else.test"], login=login)[0] == 250
    code, msg = send(pf, login, ["friend@else.test"], login=login)
    assert code == 450 and "4.7.1" in msg and "try again after" in msg, msg
    # the window passes: move the counter into the previous hour
    sql(cli, "UPDATE rate_counters SET window_start = window_start - 3600")
    assert send(pf, login, ["friend@else.test"], login=login)[0] == 250


def test_postfix_database_down_then_recovers(env: dict[str, object]) -> None:
    db, pf, daemon = env["db"], env["postfix"], env["daemon"]
    assert isinstance(daemon, Policyd)
    db.stop()  # type: ignore[attr-defined]
    try:
        time.sleep(1.2)  # let the cache expire
        code, msg = session(pf, "s@outside.test", ["bob@example.test"])[0]
        assert 400 <= code < 500, (code, msg)
        assert daemon.alive
    finally:
        db.start()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while True:
        code, msg = session(pf, "s@outside.test", ["bob@example.test"])[0]
        if code == 250 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 250, msg
    metrics = daemon.metrics()
    assert re.search(r"mailwarden_policy_store_errors_total [1-9]", metrics), metrics


# ---------------------------------------------------------------------------- Exim

EXIM_CONFIG = """\
primary_hostname = exim.example.test
MAILWARDEN_POLICY = inet:127.0.0.1:{port}
.include {contrib}
begin routers
begin transports
"""


@pytest.fixture(scope="module")
def exim(env: dict[str, object]) -> object:
    from tests.servers import Exim

    daemon = env["daemon"]
    assert isinstance(daemon, Policyd)
    conf = EXIM_CONFIG.format(port=daemon.port, contrib=CONTRIB / "exim" / "policy.conf")
    return Exim(Path(str(env["base"])), conf)


def bh(exim: object, text: str, *extra: str) -> str:
    proc = subprocess.run(
        [str(exim.exim), "-C", str(exim.config_path), *extra, "-bh", "192.0.2.1"],  # type: ignore[attr-defined]
        input=text,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout


def replies(output: str) -> list[str]:
    """The SMTP replies to RCPT/DATA lines (lines starting with a code, not 220/250-)."""
    return [line for line in output.splitlines() if re.match(r"^\d{3} ", line)]


def test_exim_same_decisions(exim: object) -> None:
    session_text = (
        "EHLO client.test\nMAIL FROM:<s@outside.test>\n"
        "RCPT TO:<alice@example.test>\nRCPT TO:<victim@else.test>\n"
        "RCPT TO:<nobody@other.test>\nRCPT TO:<full@example.test>\n"
        "RCPT TO:<victim%else.test@example.test>\nQUIT\n"
    )
    out = replies(bh(exim, session_text))
    rcpt_replies = out[3:8]  # 220 greeting, 250 EHLO, 250 MAIL
    assert rcpt_replies[0].startswith("250"), out
    assert rcpt_replies[1].startswith("554 5.7.1 Relay access denied"), out
    assert rcpt_replies[2].startswith("550 5.1.1"), out
    assert rcpt_replies[3].startswith("452 4.2.2"), out
    assert rcpt_replies[4].startswith("554 5.7.1"), out


def test_exim_authenticated_relay_and_sendas(exim: object) -> None:
    auth = ("-oMaa", "plain", "-oMai", "alice@example.test")
    ok = bh(
        exim, "EHLO c.test\nMAIL FROM:<alice@example.test>\nRCPT TO:<f@else.test>\nQUIT\n", *auth
    )
    assert replies(ok)[3].startswith("250"), ok
    bad = bh(
        exim, "EHLO c.test\nMAIL FROM:<bob@example.test>\nRCPT TO:<f@else.test>\nQUIT\n", *auth
    )
    assert replies(bad)[3].startswith("553 5.7.1"), bad


def test_exim_end_of_message(exim: object) -> None:
    text = (
        "EHLO c.test\nMAIL FROM:<s@outside.test>\nRCPT TO:<alice@example.test>\nDATA\n"
        "Subject: x\n\nhello\n.\nQUIT\n"
    )
    out = replies(bh(exim, text))
    assert any(line.startswith("250") and "Accepted" in line for line in out), out
