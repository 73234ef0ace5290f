"""``mailwarden doctor`` against a full private stack wired by ``mailwarden setup``:
Postfix (tests.servers), Dovecot reading setup's SQL file, clamd, spamd, and the three
mailwarden daemons under ``mailwarden serve``. All checks pass; with clamd stopped the
EICAR check fails and names clamd."""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import (
    Clamd,
    Dovecot,
    Postfix,
    Spamd,
    free_port,
    make_workdir,
    missing_requirements,
    self_signed_cert,
    stock_dovecot_dir,
)

pytestmark = pytest.mark.integration
SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = dict(os.environ, PYTHONPATH=SRC)
ENV.pop("MAILWARDEN_CONFIG", None)  # setup on a fresh machine; other commands name --config
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


DEBIAN_MYDESTINATION = "$myhostname, example.test, vm, localhost.localdomain, localhost"
FIXED_MYDESTINATION = "$myhostname, vm, localhost.localdomain, localhost"


def mw(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwarden", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Stack:
    base: Path
    config: Path
    postfix: Postfix
    dovecot: Dovecot
    clamd: Clamd
    metrics: int

    def doctor(self) -> subprocess.CompletedProcess[str]:
        return mw(
            "--config",
            str(self.config),
            "doctor",
            "--smtp",
            f"127.0.0.1:{self.postfix.smtp_port}",
            "--imap",
            f"127.0.0.1:{self.dovecot.imap_port}",
            "--pop3",
            f"127.0.0.1:{self.dovecot.pop3_port}",
            "--postfix-dir",
            str(self.postfix.config_dir),
            "--dovecot-conf",
            str(self.dovecot.conf_path),
            "--clamd-conf",  # this test's clamd, not the machine's /etc/clamav/clamd.conf
            str(self.clamd.conf_path),
            "--timeout",
            "40",
        )


def _wait_metrics(port: int, serve: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert serve.poll() is None, log.read_text()
        try:
            with OPENER.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
            up = re.findall(r'^mailwarden_serve_up\{daemon="\w+"\} (\S+)$', text, re.M)
            if len(up) >= 3 and all(v == "1.0" for v in up):
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"daemons not up:\n{log.read_text()}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    missing = missing_requirements(Postfix, Dovecot, Clamd, Spamd)
    if missing:
        pytest.skip(f"missing: {missing}")
    base = make_workdir("mw-doctor-")
    started: list[object] = []
    serve = None
    try:
        cert, key = self_signed_cert(base / "tls")
        tls = {
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_security_level": "may",
            # the SMTP AUTH check relays to a foreign domain at RCPT (nothing is sent);
            # the test instance's error: transports would refuse that RCPT themselves
            "default_transport": "discard:doctor test",
            "relay_transport": "discard:doctor test",
            # what Debian's postinst writes when the hosted domain is the debconf mail
            # name (local_transport is error: here, so local(8)'s bounce shows as well)
            "mydestination": DEBIAN_MYDESTINATION,
        }
        clamd, spamd, postfix = Clamd(base), Spamd(base), Postfix(base, main_cf_extra=tls)
        postfix.postconf("-F", "lmtp/unix/chroot = y", f"{postfix.smtp_port}/inet/chroot = y")
        for server in (clamd, spamd, postfix):
            server.start()
            started.append(server)
        (base / "var").mkdir(mode=0o755)
        (base / "vmail").mkdir(mode=0o755)  # tests.servers.Dovecot wants it traversable
        dovecot_etc = base / "dovecot-etc"
        stock_dovecot_dir(dovecot_etc)
        config = base / "etc" / "mailwarden.toml"
        metrics = free_port()
        r = mw(
            "setup",
            "--non-interactive",
            "--apply",
            "--database-url",
            f"sqlite:///{base}/var/mw.db",
            "--domain",
            "example.test",
            "--postmaster",
            "postmaster@example.test",
            "--mail-root",
            str(base / "vmail"),
            "--postfix-dir",
            str(postfix.config_dir),
            "--dovecot-dir",
            str(dovecot_etc),
            "--config-path",
            str(config),
            "--with-clamav",
            f"unix:{clamd.socket}",
            "--with-spamassassin",
            f"127.0.0.1:{spamd.port}",
            "--policy-listen",
            f"127.0.0.1:{free_port()}",
            # no --milter-listen/--lmtp-listen: setup's unix sockets below the queue
            # directory, reached by a chrooted smtpd and lmtp (set below), as on Debian
            "--metrics-listen",
            f"127.0.0.1:{metrics}",
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert postfix.postconf("-h", "mydestination").strip() == FIXED_MYDESTINATION
        sql = (dovecot_etc / "dovecot-mailwarden-sql.conf.ext").read_text()
        # setup wrote the SASL listener for this Postfix's queue directory
        sasl = (dovecot_etc / "conf.d/11-mailwarden-sasl.conf").read_text()
        dovecot = Dovecot(base, sql, base / "vmail", extra_conf=sasl)
        dovecot.start()
        started.append(dovecot)
        # The API's and the fetcher's defaults (127.0.0.1:8480, /var/lib/mailwarden/fetch)
        # belong to the machine's own serve (CI runs this beside the quickstart's).
        with open(config, "a", encoding="utf-8") as f:
            f.write(
                f'\n[api]\nlisten = "127.0.0.1:{free_port()}"\n'
                f'\n[fetch]\nkey_file = "{base}/fetch.key"\nstate_dir = "{base}/fetch"\n'
            )
        log = base / "serve.log"
        with open(log, "ab") as out:
            serve = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mailwarden",
                    "--config",
                    str(config),
                    "serve",
                    "--foreground",
                ],
                env=ENV,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_metrics(metrics, serve, log)
        postfix.reload()
        yield Stack(base, config, postfix, dovecot, clamd, metrics)
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(30)
        for server in reversed(started):
            server.stop()  # type: ignore[attr-defined]
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


def test_doctor_all_passed(stack: Stack) -> None:
    r = stack.doctor()
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr + stack.postfix.log_tail()
    assert r.stdout.strip().endswith("16 passed, 0 failed"), r.stdout
    assert "ok    EICAR virus refused" in r.stdout
    assert "ok    hosted domains in no other Postfix address class" in r.stdout
    # the test mail was delivered, never bounced by local(8) (Debian's mydestination)
    assert "status=bounced" not in stack.postfix.log_path.read_text(errors="replace")
    # the test mailboxes are gone again
    listing = mw("--config", str(stack.config), "user", "list")
    assert "mw-doctor" not in listing.stdout


def test_doctor_names_stopped_clamd(stack: Stack) -> None:
    stack.clamd.stop()
    try:
        r = stack.doctor()
    finally:
        stack.clamd.start()
    print(r.stdout)
    assert r.returncode == 1
    line = next(ln for ln in r.stdout.splitlines() if "EICAR" in ln)
    assert line.startswith("FAIL") and "clamd" in line and "not answering" in line, r.stdout
    assert re.search(r"^\d+ passed, [1-9]\d* failed$", r.stdout, re.M)


EICAR_BODY = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR" + b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\r\n"


def _auth_session(stack: Stack, user: str, password: str) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", stack.postfix.smtp_port, timeout=60)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    s.starttls(context=context)
    s.login(user, password)
    return s


def _send(s: smtplib.SMTP, sender: str, rcpt: str, body: bytes) -> tuple[str, int, str]:
    """(stage, code, text) of the first refusal, or ("DATA", 250, ...)."""
    code, text = s.mail(sender)
    if code != 250:
        return "MAIL", code, text.decode(errors="replace")
    code, text = s.rcpt(rcpt)
    if code != 250:
        s.rset()
        return "RCPT", code, text.decode(errors="replace")
    code, text = s.data(b"Subject: rate test\r\n\r\n" + body)
    return "DATA", code, text.decode(errors="replace")


def test_mail_the_milter_refuses_does_not_count_against_the_rate_limit(stack: Stack) -> None:
    """policyd counts at END-OF-MESSAGE, which Postfix evaluates before it asks the milter;
    a virus the milter then refuses is taken back out, so the sender's limit of one
    message per hour is still there for the clean message afterwards."""
    user, password = "ratelimited@example.test", "rate limit pw"
    add = subprocess.run(
        [sys.executable, "-m", "mailwarden", "--config", str(stack.config), "user", "add", user]
        + ["--password-stdin"],
        input=password,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert add.returncode == 0, add.stderr
    limit = mw(
        "--config", str(stack.config), "ratelimit", "set", user, "--per", "hour", "--messages", "1"
    )
    assert limit.returncode == 0, limit.stderr
    time.sleep(6)  # policyd caches the limit rows for cache_ttl (5 s)
    s = _auth_session(stack, user, password)
    try:
        for _ in range(2):
            stage, code, text = _send(s, user, "postmaster@example.test", EICAR_BODY)
            assert (stage, code) == ("DATA", 554) and "Virus" in text, (stage, code, text)
        stage, code, text = _send(s, user, "postmaster@example.test", b"clean\r\n")
        assert (stage, code) == ("DATA", 250), (stage, code, text)
        stage, code, text = _send(s, user, "postmaster@example.test", b"clean again\r\n")
        assert (stage, code) == ("RCPT", 450) and "4.7.1" in text, (stage, code, text)
    finally:
        s.close()


def test_doctor_names_every_address_class_conflict(stack: Stack) -> None:
    from mailwarden import config
    from mailwarden.doctor.checks import Failed, Options, Probe, check_address_classes

    probe = Probe(
        config.load(str(stack.config)), Options(postfix_dir=str(stack.postfix.config_dir))
    )
    assert check_address_classes(probe).endswith("none in another class")
    mw("--config", str(stack.config), "domain", "add", "backup.example", "--relay")
    mailbox_domains = stack.postfix.postconf("-h", "virtual_mailbox_domains").strip()
    alias_domains = stack.postfix.postconf("-h", "virtual_alias_domains").strip()
    try:
        stack.postfix.postconf(
            "-e",
            "mydestination = $myhostname, example.test, localhost",
            f"virtual_alias_domains = {alias_domains}, backup.example",
        )
        with pytest.raises(Failed) as failed:
            check_address_classes(probe)
        why = str(failed.value)
        assert (
            "example.test (local) is in mydestination and virtual_mailbox_domains: "
            "Postfix uses mydestination" in why
        ), why
        assert "backup.example (relay) is in virtual_alias_domains and relay_domains" in why
        stack.postfix.postconf("-e", "virtual_mailbox_domains = example.org")
        with pytest.raises(Failed) as failed:
            check_address_classes(probe)
        assert "example.test (local) is in mydestination:" in str(failed.value)
    finally:
        stack.postfix.postconf(
            "-e",
            f"mydestination = {FIXED_MYDESTINATION}",
            f"virtual_alias_domains = {alias_domains}",
            f"virtual_mailbox_domains = {mailbox_domains}",
        )
        mw("--config", str(stack.config), "domain", "remove", "backup.example")
