"""The smarthost (``mailwarden setup --relayhost``) against real servers.

Two private Postfix instances: the *smarthost* (an ISP's submission server: STARTTLS
with a self-signed certificate, SASL AUTH through a real Dovecot's auth socket, relaying
for logged-in clients only, accepted mail discarded) with a second smtpd port that offers
no STARTTLS; and the *client*, configured by ``mailwarden setup --apply`` on its private
config directory exactly as test_setup.py does, plus ``--relayhost``.

What is shown: mail for a foreign domain leaves through the smarthost, logged in (the
smarthost logs the sasl_username) over TLS; a smarthost without STARTTLS and a wrong
password leave the mail deferred, never bounced; ``--relayhost-tls secure`` sends only
to a server whose certificate verifies (against ``--relayhost-cafile``); the password is
only in the 0600 map, never in main.cf, setup's output (the dry run shows ``***``) or
the config file; re-runs change nothing; ``--relayhost none`` restores main.cf as it
was; the doctor's check passes, fails and skips as it should.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.doctor.checks import Failed, Options, Probe
from mailwarden.doctor.smarthost import check_smarthost
from tests.conftest import Cli, write_config
from tests.contrib import main_cf_settings, placeholders, render
from tests.servers import (
    Dovecot,
    Postfix,
    free_port,
    make_workdir,
    missing_requirements,
    stock_dovecot_dir,
)

pytestmark = pytest.mark.integration

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
SRC = str(Path(__file__).resolve().parents[2] / "src")
LOGIN = "relay@isp.test"
PASSWORD = "isp pw:#7 'q'"  # a space, a colon, a hash, quotes: all kept verbatim
WRONG = "not the password"


@dataclass
class World:
    base: Path
    smarthost: Postfix
    dovecot: Dovecot
    plain_port: int  # the smarthost's smtpd without STARTTLS
    client: Postfix
    config: Path
    baseline: str  # the client's postconf -n after setup without a smarthost
    policy_port: int

    @property
    def tls_relayhost(self) -> str:
        return f"[127.0.0.1]:{self.smarthost.smtp_port}"

    @property
    def plain_relayhost(self) -> str:
        return f"[127.0.0.1]:{self.plain_port}"

    def setup(self, *extra: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        base = self.base
        args = [
            "setup",
            "--non-interactive",
            "--database-url",
            f"sqlite:///{base}/client-var/mw.db",
            "--domain",
            "example.test",
            "--postmaster",
            "postmaster@example.test",
            "--mail-root",
            str(base / "client-vmail"),
            "--postfix-dir",
            str(self.client.config_dir),
            "--dovecot-dir",
            str(base / "client-dovecot"),
            "--config-path",
            str(self.config),
            "--policy-listen",
            f"127.0.0.1:{self.policy_port}",
            "--metrics-listen",
            "none",
            "--lmtp-listen",
            f"unix:{base}/lmtp.sock",
            "--milter-listen",
            f"unix:{base}/milter.sock",
            *extra,
        ]
        env = dict(os.environ, PYTHONPATH=SRC)
        env.pop("MAILWARDEN_CONFIG", None)
        return subprocess.run(
            [sys.executable, "-m", "mailwarden", *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def configure(self, *extra: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """setup --apply, then the test's own change: no milter for locally submitted
        mail (no milter runs here; what is tested is the way out)."""
        r = self.setup("--apply", *extra, stdin=stdin)
        assert r.returncode == 0, r.stdout + r.stderr
        self.client.postconf("-e", "non_smtpd_milters =")
        self.client.reload()
        return r

    def postconf_n(self) -> str:
        return self.client.postconf("-n")

    def send(self) -> str:
        """Submit a message to a foreign address with sendmail; its recipient."""
        rcpt = f"ext-{secrets.token_hex(4)}@remote.test"
        msg = f"From: postmaster@example.test\nTo: {rcpt}\nSubject: out\n\nvia the smarthost\n"
        subprocess.run(
            ["sendmail", "-C", str(self.client.config_dir), "-f", "postmaster@example.test"]
            + [rcpt],
            input=msg,
            text=True,
            check=True,
            timeout=60,
        )
        return rcpt

    def outcome(self, rcpt: str, since: int) -> re.Match[str]:
        return self.client.wait_log(
            rf"to=<{re.escape(rcpt)}>, relay=.*status=(\w+) \((.*)\)$", timeout=30, since=since
        )

    def clear_queue(self) -> None:
        subprocess.run(
            ["postsuper", "-c", str(self.client.config_dir), "-d", "ALL"],
            capture_output=True,
            check=False,
            timeout=60,
        )

    def probe(self) -> Probe:
        settings = config.load(str(self.config))
        return Probe(settings, Options(postfix_dir=str(self.client.config_dir), timeout=15))


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the smarthost, valid for the name ``localhost``
    (Postfix's ``secure`` level matches the relayhost's name, never an IP address)."""
    directory.mkdir(mode=0o700)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-subj", "/CN=smtp.isp.test", "-keyout", str(key), "-out", str(cert)]
        + ["-addext", "subjectAltName=DNS:localhost"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return cert, key


def _smarthost_settings(cert: Path, key: Path) -> dict[str, str]:
    settings = main_cf_settings((CONTRIB / "postfix/main.cf.sasl").read_text())
    settings.update(
        {
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_security_level": "may",
            # an ISP's submission server: logged-in clients relay, nobody else
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
            "default_transport": "discard:smarthost",
            "relay_transport": "discard:smarthost",
        }
    )
    return settings


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    missing = missing_requirements(Postfix, Dovecot)
    if missing or not shutil.which("openssl") or not shutil.which("sendmail"):
        pytest.skip(f"needs Postfix, Dovecot, openssl and sendmail: {missing}")
    base = make_workdir("mw-smarthost-")
    (base / "isp-var").mkdir(mode=0o755)
    (base / "client-var").mkdir(mode=0o755)
    url = f"sqlite:///{base}/isp-var/isp.db"
    cli = Cli(write_config(base / "isp.toml", url, base / "isp-vmail"), url)
    cli.ok("db", "init")
    cli.ok("domain", "add", "isp.test")
    cli.ok("user", "add", LOGIN, "--password-stdin", stdin=PASSWORD)
    os.chmod(base / "isp-var" / "isp.db", 0o644)  # Dovecot's auth worker reads it
    started: list[Postfix | Dovecot] = []
    try:
        plain_port = free_port()
        smarthost = Postfix(
            base,
            main_cf_extra=_smarthost_settings(*_certificate(base / "tls")),
            master_cf_extra=[
                f"{plain_port} inet n - n - - smtpd -o smtpd_tls_security_level=none"
                " -o smtpd_tls_auth_only=no"
            ],
        )
        smarthost.start()
        started.append(smarthost)
        values = placeholders(
            url, mail_root=base / "isp-vmail", sasl_socket=smarthost.queue_dir / "private/auth"
        )
        sql_conf = render((CONTRIB / "dovecot/dovecot-sql.conf.ext.sqlite").read_text(), values)
        sasl_conf = render((CONTRIB / "dovecot/11-mailwarden-sasl.conf").read_text(), values)
        dovecot = Dovecot(base, sql_conf, base / "isp-vmail", extra_conf=sasl_conf)
        dovecot.start()
        started.append(dovecot)
        client = Postfix(
            base,
            main_cf_extra={
                # a stock Internet site: mail for other domains goes out by smtp(8)
                "default_transport": "smtp",
                "relay_transport": "relay",
                "smtp_tls_loglevel": "1",
            },
        )
        client.start()
        started.append(client)
        stock_dovecot_dir(base / "client-dovecot")
        w = World(
            base, smarthost, dovecot, plain_port, client, base / "client.toml", "", free_port()
        )
        w.configure()
        w.baseline = w.postconf_n()
        yield w
    finally:
        for server in reversed(started):
            server.stop()
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)


def _relay(relayhost: str) -> list[str]:
    return ["--relayhost", relayhost, "--relayhost-user", LOGIN, "--relayhost-password-stdin"]


def _assert_secret(w: World, *outputs: str) -> None:
    passwd = w.client.config_dir / "mailwarden" / "smarthost_passwd"
    for path in (passwd, passwd.with_name("smarthost_passwd.db")):
        st = path.stat()
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0), path
    assert PASSWORD in passwd.read_text()
    places = {
        "main.cf": (w.client.config_dir / "main.cf").read_text(),
        "master.cf": (w.client.config_dir / "master.cf").read_text(),
        "config": w.config.read_text(),
        "client log": w.client.log_text(),
        **{f"output {i}": text for i, text in enumerate(outputs)},
    }
    for where, text in places.items():
        assert PASSWORD not in text and "#7 'q'" not in text, where


def test_dry_run_shows_the_password_masked_and_changes_nothing(world: World) -> None:
    w = world
    before = w.postconf_n()
    dry = w.setup("--dry-run", *_relay(w.tls_relayhost), stdin=PASSWORD + "\n")
    assert dry.returncode == 0, dry.stderr
    assert f"+{w.tls_relayhost} {LOGIN}:***" in dry.stdout, dry.stdout
    assert f"+{w.tls_relayhost} encrypt" in dry.stdout
    assert f"-e 'relayhost = {w.tls_relayhost}'" in dry.stdout
    assert "postmap -c" in dry.stdout and "smtp_tls_policy_maps = hash:" in dry.stdout
    assert PASSWORD not in dry.stdout + dry.stderr
    assert w.postconf_n() == before
    assert not (w.client.config_dir / "mailwarden" / "smarthost_passwd").exists()


def test_mail_leaves_through_the_smarthost_logged_in(world: World) -> None:
    w = world
    w.clear_queue()
    r = w.configure(*_relay(w.tls_relayhost), stdin=PASSWORD + "\n")
    assert w.client.postconf("-h", "relayhost").strip() == w.tls_relayhost
    policy = w.client.postconf("-h", "smtp_tls_policy_maps").strip()
    assert policy == f"hash:{w.client.config_dir}/mailwarden/smarthost_tls"
    assert w.client.postmap_q(w.tls_relayhost, policy) == "encrypt"
    # re-runs change nothing: with the same password, and with none (the map keeps it)
    for stdin, extra in ((PASSWORD + "\n", _relay(w.tls_relayhost)), ("", [])):
        w.client.postconf("-e", "non_smtpd_milters = $smtpd_milters")  # setup's own value
        again = w.setup("--apply", *extra, stdin=stdin)
        assert again.stdout.strip() == "mailwarden setup: nothing to change", again.stdout
    w.client.postconf("-e", "non_smtpd_milters =")
    w.client.reload()

    client_mark, isp_mark = w.client.log_mark(), w.smarthost.log_mark()
    rcpt = w.send()
    status = w.outcome(rcpt, client_mark)
    assert status.group(1) == "sent", status.group(0)
    assert f"relay=127.0.0.1[127.0.0.1]:{w.smarthost.smtp_port}" in status.group(0)
    client_log = w.client.log_text(client_mark)
    assert "TLS connection established to 127.0.0.1" in client_log, client_log
    w.smarthost.wait_log(rf"sasl_method=PLAIN, sasl_username={re.escape(LOGIN)}", since=isp_mark)
    w.smarthost.wait_log(rf"to=<{re.escape(rcpt)}>.*status=sent", since=isp_mark)
    _assert_secret(w, r.stdout, r.stderr)
    assert "password not sent" in check_smarthost(w.probe())


def test_wrong_password_defers_and_never_bounces(world: World) -> None:
    w = world
    w.clear_queue()
    dry = w.setup("--dry-run", *_relay(w.tls_relayhost), stdin=WRONG + "\n")
    assert "the password changes (not shown)" in dry.stdout, dry.stdout
    assert WRONG not in dry.stdout
    w.configure(*_relay(w.tls_relayhost), stdin=WRONG + "\n")
    mark = w.client.log_mark()
    rcpt = w.send()
    status = w.outcome(rcpt, mark)
    assert status.group(1) == "deferred", status.group(0)
    assert "SASL authentication failed" in status.group(2) and "535" in status.group(2)
    assert "status=bounced" not in w.client.log_text(mark)
    assert len(w.client.queue_ids()) == 1  # still queued for the next try
    w.clear_queue()
    w.configure(*_relay(w.tls_relayhost), stdin=PASSWORD + "\n")


def test_smarthost_without_starttls_gets_no_password_and_no_mail(world: World) -> None:
    w = world
    w.clear_queue()
    # a new relayhost needs its password: refused in one line, nothing changed
    before = w.postconf_n()
    missing = w.setup("--apply", "--relayhost", w.plain_relayhost, "--relayhost-user", LOGIN)
    assert missing.returncode == 1 and "give --relayhost-password-stdin" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and w.postconf_n() == before
    w.configure(*_relay(w.plain_relayhost), stdin=PASSWORD + "\n")
    client_mark, isp_mark = w.client.log_mark(), w.smarthost.log_mark()
    rcpt = w.send()
    status = w.outcome(rcpt, client_mark)
    assert status.group(1) == "deferred", status.group(0)
    assert "TLS is required, but was not offered" in status.group(2), status.group(0)
    assert "status=bounced" not in w.client.log_text(client_mark)
    assert "sasl_username" not in w.smarthost.log_text(isp_mark)
    with pytest.raises(Failed, match="offers no STARTTLS"):
        check_smarthost(w.probe())
    w.clear_queue()


def test_doctor_names_a_smarthost_that_does_not_answer(world: World) -> None:
    w = world
    dead = f"[127.0.0.1]:{free_port()}"
    w.configure(*_relay(dead), stdin=PASSWORD + "\n")
    with pytest.raises(Failed, match="does not answer"):
        check_smarthost(w.probe())


def test_relayhost_none_restores_main_cf(world: World) -> None:
    w = world
    w.configure(*_relay(w.tls_relayhost), stdin=PASSWORD + "\n")
    dry = w.setup("--dry-run", "--relayhost", "none")
    assert "-X relayhost" in dry.stdout, dry.stdout
    w.configure("--relayhost", "none")
    assert w.postconf_n() == w.baseline
    assert not list((w.client.config_dir / "mailwarden").glob("smarthost_*"))
    assert "[smarthost]" not in w.config.read_text()
    assert check_smarthost(w.probe()).startswith("not configured")
    w.client.postconf("-e", "non_smtpd_milters = $smtpd_milters")
    again = w.setup("--apply", "--relayhost", "none")
    assert again.stdout.strip() == "mailwarden setup: nothing to change", again.stdout
    bare = w.setup("--apply")
    assert bare.stdout.strip() == "mailwarden setup: nothing to change", bare.stdout


def test_secure_level_checks_the_certificate(world: World) -> None:
    """``--relayhost-tls secure``: the certificate must verify (here: against the CA file
    given, as ``tafile=`` in the policy entry), else the mail is deferred."""
    w = world
    w.clear_queue()
    cafile = str(w.base / "isp-ca.pem")  # smtp(8) reads it as user postfix
    shutil.copy(w.base / "tls" / "cert.pem", cafile)
    os.chmod(cafile, 0o644)
    relayhost = f"[localhost]:{w.smarthost.smtp_port}"  # the name in the certificate
    secure = [*_relay(relayhost), "--relayhost-tls", "secure"]
    w.configure(*secure, "--relayhost-cafile", cafile, stdin=PASSWORD + "\n")
    policy = w.client.postconf("-h", "smtp_tls_policy_maps").strip()
    assert w.client.postmap_q(relayhost, policy) == f"secure tafile={cafile}"
    client_mark, isp_mark = w.client.log_mark(), w.smarthost.log_mark()
    rcpt = w.send()
    status = w.outcome(rcpt, client_mark)
    assert status.group(1) == "sent", status.group(0)
    assert "Verified TLS connection established" in w.client.log_text(client_mark)
    w.smarthost.wait_log(rf"sasl_username={re.escape(LOGIN)}", since=isp_mark)
    assert "password not sent" in check_smarthost(w.probe())
    # the same server against the system CAs only: not verified, deferred, no password
    w.configure(*secure, "--relayhost-cafile", "", stdin=PASSWORD + "\n")
    assert w.client.postmap_q(relayhost, policy) == "secure"
    client_mark, isp_mark = w.client.log_mark(), w.smarthost.log_mark()
    rcpt = w.send()
    status = w.outcome(rcpt, client_mark)
    assert status.group(1) == "deferred", status.group(0)
    assert "certificate" in status.group(2).lower(), status.group(0)
    assert "sasl_username" not in w.smarthost.log_text(isp_mark)
    with pytest.raises(Failed, match="TLS failed"):
        check_smarthost(w.probe())
    w.clear_queue()
