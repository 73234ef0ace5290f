"""SMTP AUTH end to end: real Postfix with contrib/postfix/main.cf.sasl and main.cf.policy,
real Dovecot answering SASL through contrib/dovecot/11-mailwarden-sasl.conf, and policyd,
all on one SQLite database created by the CLI.

What a mail client sees: no AUTH before STARTTLS; a wrong password refused (535); the
right one lets the client relay to a foreign domain, but only with its own address as
MAIL FROM (send-as, 553 5.7.1) — the login name policyd gets is the one Dovecot checked,
not a claim of the client (tests/integration/test_policy_mta.py covers the same checks
with XCLIENT).
"""

from __future__ import annotations

import os
import shutil
import smtplib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cli, write_config
from tests.contrib import main_cf_settings, placeholders, render
from tests.daemons import Daemon, start_daemon
from tests.servers import (
    Dovecot,
    Postfix,
    free_port,
    make_workdir,
    missing_requirements,
    self_signed_cert,
)

pytestmark = pytest.mark.integration

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
PASSWORD = "alice secret 'pw'"


@dataclass
class Stack:
    postfix: Postfix
    dovecot: Dovecot
    policyd: Daemon


def _postfix_settings(policy_port: int, cert: Path, key: Path) -> dict[str, str]:
    policy = (CONTRIB / "postfix/main.cf.policy").read_text()
    settings = main_cf_settings(
        policy.replace("inet:127.0.0.1:10040", f"inet:127.0.0.1:{policy_port}")
    )
    settings.update(main_cf_settings((CONTRIB / "postfix/main.cf.sasl").read_text()))
    settings.update(
        {
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_security_level": "may",
            # accepted mail is dropped (nothing leaves the machine)
            "default_transport": "discard:sasl test",
            "relay_transport": "discard:sasl test",
        }
    )
    return settings


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    missing = missing_requirements(Postfix, Dovecot)
    if missing or not shutil.which("openssl"):
        pytest.skip(f"needs Postfix, Dovecot and openssl: {missing}")
    base = make_workdir("mw-sasl-")
    (base / "var").mkdir(mode=0o755)
    root = base / "vmail"
    url = f"sqlite:///{base}/var/mw.db"
    cfg = write_config(base / "mw.toml", url, root, "[policy]\ncache_ttl = 1.0\n")
    cli = Cli(cfg, url)
    cli.ok("db", "init")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", "alice@example.test", "--password-stdin", stdin=PASSWORD)
    cli.ok("user", "add", "bob@example.test", "--password-stdin", stdin="bob pw")
    os.chmod(base / "var" / "mw.db", 0o644)  # Dovecot's auth worker reads it

    started: list[object] = []
    try:
        port = free_port()
        policyd = start_daemon("policyd", cfg, f"127.0.0.1:{port}", base / "policyd.log")
        started.append(policyd)
        postfix = Postfix(
            base, main_cf_extra=_postfix_settings(port, *self_signed_cert(base / "tls"))
        )
        postfix.start()  # creates <queue>/private, where Dovecot puts the SASL socket
        started.append(postfix)
        values = placeholders(url, mail_root=root, sasl_socket=postfix.queue_dir / "private/auth")
        sql_conf = render((CONTRIB / "dovecot/dovecot-sql.conf.ext.sqlite").read_text(), values)
        sasl_conf = render((CONTRIB / "dovecot/11-mailwarden-sasl.conf").read_text(), values)
        dovecot = Dovecot(base, sql_conf, root, extra_conf=sasl_conf)
        dovecot.start()
        started.append(dovecot)
        yield Stack(postfix, dovecot, policyd)
    finally:
        for server in reversed(started):
            server.stop()  # type: ignore[attr-defined]
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


def connect(stack: Stack, *, tls: bool = True) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", stack.postfix.smtp_port, timeout=30)
    s.ehlo("client.test")
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        s.starttls(context=context)
        s.ehlo("client.test")
    return s


def relay_attempt(s: smtplib.SMTP, sender: str) -> tuple[int, str]:
    code, msg = s.docmd(f"MAIL FROM:<{sender}>")
    assert code == 250, msg
    code, msg = s.docmd("RCPT TO:<friend@else.test>")
    return code, msg.decode(errors="replace")


def test_auth_offered_only_after_starttls(stack: Stack) -> None:
    plain = connect(stack, tls=False)
    try:
        assert not plain.has_extn("auth")
        assert plain.has_extn("starttls")
    finally:
        plain.close()
    secure = connect(stack)
    try:
        assert "PLAIN" in secure.esmtp_features["auth"].split()
    finally:
        secure.close()


def test_wrong_password_is_refused(stack: Stack) -> None:
    s = connect(stack)
    try:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            s.login("alice@example.test", "not the password")
        assert refused.value.smtp_code == 535
        # and nothing was granted: relaying is still refused
        code, msg = relay_attempt(s, "alice@example.test")
        assert code == 554 and "5.7.1" in msg, msg
    finally:
        s.close()


def test_login_relays_with_own_address_only(stack: Stack) -> None:
    s = connect(stack)
    try:
        s.login("Alice@Example.TEST", PASSWORD)  # logins are case-insensitive
        assert relay_attempt(s, "alice@example.test")[0] == 250
        s.rset()
        code, msg = relay_attempt(s, "bob@example.test")
        assert code == 553 and "5.7.1" in msg, msg
        s.rset()
        s.docmd("MAIL FROM:<alice@example.test>")
        s.docmd("RCPT TO:<friend@else.test>")
        code, reply = s.data(b"Subject: via AUTH\r\n\r\nhello\r\n")
        assert code == 250, reply
    finally:
        s.close()


def test_without_login_relay_is_refused(stack: Stack) -> None:
    s = connect(stack)
    try:
        code, msg = relay_attempt(s, "alice@example.test")
        assert code == 554 and "5.7.1" in msg, msg
    finally:
        s.close()
