"""Traffic on a Postfix site: each message counted exactly once, in either counter mode.

REAL Postfix with the contrib SQL maps, the milter (contrib/postfix/main.cf.milter),
policyd on every stage (contrib/postfix/main.cf.policy, END-OF-MESSAGE included) and
``lmtpd`` as the virtual transport (main.cf.lda) — all three running and sharing one
config, so all three *could* count. Authenticated submission through XCLIENT LOGIN; a
relay domain's transport points at a capture SMTP server on 127.0.0.2.

``[traffic] counter = "milter"`` (the default): only the milter counts;
``"daemons"``: lmtpd counts mail in, policyd mail out, the milter nothing. Either way one
inbound message to two mailboxes of example.test counts ``in`` once and one message alice
sends to the capture destination counts ``out`` once — and nothing more arrives later.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import Cli
from tests.contrib import CONTRIB, main_cf_settings, placeholders, render_file
from tests.daemons import Daemon, mail_dirs
from tests.integration.test_milter_protocol import MilterProcess
from tests.integration.test_policy_mta import Policyd
from tests.integration.test_stack_spam import MAPS, PW, postfix_settings, start_lmtpd
from tests.integration.test_traffic_exim import (
    CAPTURE_HOST,
    Capture,
    message,
    report,
    wait_for,
    wait_for_total,
)

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.test", "bob@example.test"
FAR = "far.test"


@dataclass
class Stack:
    counter: str
    root: Path
    cli: Cli
    postfix: servers.Postfix
    capture: Capture
    milter: MilterProcess

    def milter_counted(self, direction: str) -> float:
        """The milter's ``mailwarden_traffic_messages_total{direction=...}`` (0 if absent)."""
        url = f"http://127.0.0.1:{self.milter.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        name = f'mailwarden_traffic_messages_total{{direction="{direction}"}} '
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


@pytest.fixture(scope="module", params=["milter", "daemons"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    counter: str = request.param
    missing = servers.missing_requirements(servers.Postfix)
    if missing:
        pytest.skip("cannot run real servers: " + "; ".join(missing))
    base = servers.make_workdir(f"mw-traffic-pf-{counter}-")
    root, db, url = mail_dirs(base)
    daemons: list[Daemon | Policyd | MilterProcess] = []
    capture = Capture().start()
    postfix: servers.Postfix | None = None
    try:
        cfg = base / "mailwarden.toml"
        cfg.write_text(
            f'[database]\nurl = "{url}"\n[mail]\nroot = "{root}"\nuid = 5000\ngid = 5000\n'
            f'[lda]\nlmtp_listen = []\nmetrics_dir = "{base / "metrics"}"\n'
            '[milter]\nclamd = ""\nspamd = ""\n'
            f'[policy]\ncache_ttl = 1.0\n[traffic]\ncounter = "{counter}"\n'
        )
        cli = Cli(cfg, url)
        cli.ok("db", "init")
        cli.ok("domain", "add", "example.test")
        cli.ok(
            "domain", "add", FAR, "--relay", "--transport", f"smtp:[{CAPTURE_HOST}]:{capture.port}"
        )
        for user in (ALICE, BOB):
            cli.ok("user", "add", "--password-stdin", user, stdin=PW + "\n")
        for path in (db, *db.parent.iterdir()):
            os.chmod(path, 0o666)  # proxymap (postfix) reads it
        os.chmod(db.parent, 0o777)

        port = servers.free_port()
        milter = MilterProcess(
            cfg, base / "milter-tmp", f"inet:{port}@127.0.0.1", port, servers.free_port(),
            base / "milter.log",
        )  # fmt: skip
        milter.start()
        daemons.append(milter)
        policyd = Policyd(cfg, base / "policyd.log")
        daemons.append(policyd)
        sock = base / "lmtp.sock"
        daemons.append(start_lmtpd(cfg, sock, base / "lmtpd.log"))

        postfix = servers.Postfix(base)
        map_dir = postfix.config_dir / "mailwarden"
        values = placeholders(url, mail_root=root, postfix_dir=map_dir)
        for name in MAPS:
            path = render_file(
                f"postfix/sqlite/{name}.cf", values, map_dir / f"{name}.cf", group="postfix"
            )
            past = time.time() - 60  # Postfix pauses before reading a file changed within 1 s
            os.utime(path, (past, past))
        settings = postfix_settings(values, port, sock)
        policy = (CONTRIB / "postfix" / "main.cf.policy").read_text()
        settings.update(
            main_cf_settings(
                policy.replace("inet:127.0.0.1:10040", f"inet:127.0.0.1:{policyd.port}")
            )
        )
        settings["smtpd_authorized_xclient_hosts"] = "127.0.0.0/8"
        postfix.postconf("-e", *(f"{k}={v}" for k, v in settings.items()))
        postfix.start()
        yield Stack(counter, root, cli, postfix, capture, milter)
    finally:
        if postfix is not None:
            postfix.stop()
        for daemon in daemons:
            daemon.stop()
        capture.stop()
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


def send(stack: Stack, sender: str, rcpts: list[str], subject: str, login: str = "") -> bytes:
    data = message(sender, rcpts, subject)
    with smtplib.SMTP("127.0.0.1", stack.postfix.smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        if login:
            code, text = smtp.docmd("XCLIENT", f"LOGIN={login}")
            assert code == 220, text
            smtp.ehlo("client.test")
        smtp.sendmail(sender, rcpts, data)
    return data


def test_each_message_counted_exactly_once(stack: Stack) -> None:
    send(stack, "sender@outside.test", [ALICE, BOB], "traffic in")
    wait_for("delivery", lambda: len(list((stack.root / "example.test").glob("*/new/*"))) == 2)
    send(stack, ALICE, [f"x@{FAR}"], "traffic out", login=ALICE)
    wait_for("the capture server", lambda: len(stack.capture.messages) == 1)
    assert b"Subject: traffic out" in stack.capture.messages[0]

    got = wait_for_total(stack.cli, {"messages_in": 1, "messages_out": 1})
    total = got["total"]
    assert (total["messages_in"], total["messages_out"]) == (1, 1), (stack.counter, got)
    # the sizes are each counter's view of the message (Postfix's Received: included)
    assert total["bytes_in"] > 600 and total["bytes_out"] > 600, got
    assert report(stack.cli, FAR)["days"] == []
    by_milter = 1.0 if stack.counter == "milter" else 0.0  # else lmtpd and policyd did
    assert (stack.milter_counted("in"), stack.milter_counted("out")) == (by_milter, by_milter)
