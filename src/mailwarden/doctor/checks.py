"""The doctor's checks. Each takes the ``Probe`` and returns a detail string, or raises
``Failed`` with the cause. Order matters: later checks use the test mailboxes."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from mailwarden import address, config
from mailwarden.config import Settings
from mailwarden.doctor import mail
from mailwarden.doctor.failed import Failed
from mailwarden.doctor.smarthost import check_smarthost
from mailwarden.errors import MailwardenError
from mailwarden.setup import classes
from mailwarden.setup.postconf import queue_directory
from mailwarden.setup.targets import postfix_address
from mailwarden.store import domains, migrate
from mailwarden.store.db import Database

LOCAL_SIGNATURES = "mailwarden-local.ndb"


@dataclass(frozen=True)
class Options:
    smtp: str = "127.0.0.1:25"
    imap: str = "127.0.0.1:143"
    pop3: str = "127.0.0.1:110"
    postfix_dir: str = "/etc/postfix"
    dovecot_conf: str = "/etc/dovecot/dovecot.conf"
    metrics: str = ""
    domain: str = ""
    timeout: float = 30.0
    clamd_conf: str = "/etc/clamav/clamd.conf"


@dataclass
class Account:
    address: str
    password: str
    maildir: str


@dataclass
class Probe:
    settings: Settings
    opts: Options
    accounts: list[Account] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(6))

    @property
    def user(self) -> Account:
        if not self.accounts:
            raise Failed("skipped: no test mailbox")
        return self.accounts[0]

    def cli(self, *args: str, stdin: str = "") -> str:
        argv = [sys.executable, "-m", "mailwarden"]
        if os.path.isabs(self.settings.source):
            argv += ["--config", self.settings.source]
        proc = subprocess.run(
            [*argv, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            raise Failed(f"mailwarden {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout


def _db(settings: Settings) -> Database:
    return Database(settings.database.url, connect_timeout=settings.database.connect_timeout)


def check_config(p: Probe) -> str:
    s = p.settings
    if os.path.isabs(s.source):
        config.load(s.source)  # ConfigError names file and key
    from mailwarden.milter.options import check_settings

    check_settings(s.milter, s.source)
    return s.source


def check_database(p: Probe) -> str:
    db = _db(p.settings)
    try:
        st = migrate.status(db)
    finally:
        db.close()
    if st.pending:
        raise Failed(f"schema {st.current}, {st.latest} available: run 'mailwarden db upgrade'")
    return f"{db.url.masked}, schema {st.current}"


def check_address_classes(p: Probe) -> str:
    """Every hosted domain in its own Postfix address class only (a domain also in
    mydestination is bounced by local(8) as "unknown user")."""
    db = _db(p.settings)
    try:
        with db.read() as tx:
            hosted = {str(r["name"]): str(r["kind"]) for r in domains.list_all(tx)}
    finally:
        db.close()
    if not hosted:
        return "no domains yet"
    problems = classes.conflicts(classes.Postconf.read(p.opts.postfix_dir), hosted)
    if problems:
        raise Failed("; ".join(problems) + " (run 'mailwarden setup --apply')")
    return f"{len(hosted)} domain{'s' if len(hosted) != 1 else ''}, none in another class"


def _domain(p: Probe) -> str:
    if p.opts.domain:
        return address.normalize_domain(p.opts.domain)
    db = _db(p.settings)
    try:
        with db.read() as tx:
            local = [
                r["name"]
                for r in domains.list_all(tx)
                if r["kind"] == "local" and not str(r["name"]).startswith("*.")  # wildcard
            ]
    finally:
        db.close()
    if not local:
        raise Failed("no local domain: run 'mailwarden setup' or 'mailwarden domain add'")
    return str(local[0])


def mailbox_password() -> str:
    """A random password for a test mailbox. Never starts with ``-``: ``doveadm auth
    test USER PASSWORD`` would read that as an option (token_urlsafe gives one in 64)."""
    return "mw" + secrets.token_urlsafe(12)


def create_accounts(p: Probe) -> str:
    domain = _domain(p)
    mail_settings = p.settings.mail
    for kind, extra in (("", []), ("full-", ["--quota", "1K"])):
        addr = f"mw-doctor-{kind}{p.token}@{domain}"
        password = mailbox_password()
        rel = address.maildir_relpath(address.parse_address(addr), mail_settings.layout)
        account = Account(addr, password, address.maildir_path(mail_settings.root, rel))
        p.cli("user", "add", addr, "--password-stdin", *extra, stdin=password + "\n")
        p.accounts.append(account)
    return ", ".join(a.address for a in p.accounts)


def cleanup(p: Probe) -> None:
    for account in p.accounts:
        with contextlib.suppress(Failed, subprocess.SubprocessError):
            p.cli("user", "remove", account.address)
        shutil.rmtree(account.maildir, ignore_errors=True)
    p.accounts.clear()


def _postconf(p: Probe, key: str) -> str:
    proc = subprocess.run(
        ["postconf", "-c", p.opts.postfix_dir, "-h", key],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise Failed(f"postconf -c {p.opts.postfix_dir}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def check_postfix(p: Probe) -> str:
    s = p.settings
    try:
        queue = queue_directory(p.opts.postfix_dir)
    except MailwardenError as exc:
        raise Failed(str(exc)) from None
    milter = postfix_address(s.milter.listen[0], milter=True, queue_dir=queue)
    if milter not in _postconf(p, "smtpd_milters"):
        raise Failed(f"smtpd_milters does not name {milter}: run 'mailwarden setup --apply'")
    policy = postfix_address(s.policy.listen[0])
    if policy not in _postconf(p, "smtpd_recipient_restrictions"):
        raise Failed(f"smtpd_recipient_restrictions lacks check_policy_service {policy}")
    transport = _postconf(p, "virtual_transport")
    lmtp = "lmtp:" + postfix_address(s.lda.lmtp_listen[0], queue_dir=queue)
    if transport not in (lmtp, "mailwarden"):
        raise Failed(f"virtual_transport is {transport!r}, not mailwarden's lmtpd")
    maps = _postconf(p, "virtual_mailbox_maps").split(",")[0].strip().removeprefix("proxy:")
    proc = subprocess.run(
        ["postmap", "-c", p.opts.postfix_dir, "-q", p.user.address, maps],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise Failed(f"postmap -q {p.user.address} {maps}: no answer {proc.stderr.strip()}")
    return f"milter {milter}, policy {policy}, {transport}, postmap -q answers"


def others_can_connect(path: str) -> bool:
    """Whether a local user who is neither owner nor in the group of the socket and of
    every directory above it could connect to the unix socket ``path``."""
    st = os.stat(path)
    if not st.st_mode & 0o002:
        return False
    parent = os.path.dirname(os.path.abspath(path))
    while True:
        if not os.stat(parent).st_mode & 0o001:
            return False
        if parent == "/":
            return True
        parent = os.path.dirname(parent)


def check_lmtp_socket(p: Probe) -> str:
    """lmtpd delivers what it is handed: only the MTA may reach it (docs/delivery.md)."""
    if not p.settings.lda.lmtp_listen:
        return "lmtpd listens nowhere ([lda] lmtp_listen = [])"
    spec = p.settings.lda.lmtp_listen[0]
    if not spec.startswith(("unix:", "/")):
        raise Failed(
            f"lmtpd listens on {spec}: on TCP any local process can deliver "
            "mail past policyd and the scanners; use its unix socket "
            "(docs/operations.md, 'Upgrading from a TCP lmtpd')"
        )
    path = spec.removeprefix("unix:")
    try:
        if others_can_connect(path):
            raise Failed(
                f"any local user can connect to lmtpd's socket {path}: "
                "make its directory <lmtpd user>:postfix 0750 (mailwarden setup)"
            )
    except FileNotFoundError:
        raise Failed(f"lmtpd's socket {path} does not exist: is lmtpd running?") from None
    except PermissionError as exc:
        raise Failed(f"cannot check lmtpd's socket {path}: {exc.strerror}") from None
    return f"{path}: only its owner and group can connect"


def check_dovecot(p: Probe) -> str:
    proc = subprocess.run(
        ["doveadm", "-c", p.opts.dovecot_conf, "auth", "test", p.user.address, p.user.password],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stdout + proc.stderr).strip().splitlines()
        raise Failed(f"doveadm auth test failed: {last[0] if last else proc.returncode}")
    return f"doveadm auth test {p.user.address}"


def _deadline(p: Probe) -> float:
    return time.monotonic() + p.opts.timeout - 2


def check_imap(p: Probe) -> str:
    u = p.user
    subject = f"mailwarden doctor {p.token} inbox"
    reply = mail.send(
        p.opts.smtp,
        u.address,
        u.address,
        mail.message(u.address, u.address, subject, "test\n"),
        p.opts.timeout,
    )
    found = mail.imap_find(
        p.opts.imap, u.address, u.password, folder="INBOX", token=subject, deadline=_deadline(p)
    )
    if found is None:
        raise Failed(f"sent ({reply.strip()[:60]}) but not in INBOX over IMAP {p.opts.imap}")
    return f"SMTP {p.opts.smtp} -> IMAP {p.opts.imap}"


def check_pop3(p: Probe) -> str:
    u = p.user
    if not mail.pop3_find(p.opts.pop3, u.address, u.password, f"mailwarden doctor {p.token}"):
        raise Failed(f"test message not found over POP3 {p.opts.pop3}")
    return f"POP3 {p.opts.pop3}"


def _ping(where: str, request: bytes, expect: bytes) -> bool:
    try:
        if where.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(3)
            sock.connect(where[5:])
        else:
            sock = socket.create_connection(mail.split(where), timeout=3)
        with sock:
            sock.sendall(request)
            return expect in sock.recv(256)
    except OSError:
        return False


def check_eicar(p: Probe) -> str:
    clamd = p.settings.milter.clamd
    if not clamd:
        raise Failed("milter.clamd is empty: virus scanning is off (setup --with-clamav)")
    u = p.user
    data = mail.message(u.address, u.address, f"mailwarden doctor {p.token} eicar", "")
    data += mail.EICAR + b"\r\n"
    try:
        mail.send(p.opts.smtp, u.address, u.address, data, p.opts.timeout)
    except mail.Refused as exc:
        if exc.code >= 500:
            return f"refused: {exc.code} {exc.text[:60]}"
        cause = "" if _ping(clamd, b"zPING\0", b"PONG") else f": clamd at {clamd} not answering"
        raise Failed(f"EICAR answered {exc.code} {exc.text[:60]}{cause}") from None
    cause = "" if _ping(clamd, b"zPING\0", b"PONG") else f" (clamd at {clamd} not answering)"
    raise Failed(f"EICAR was accepted{cause}")


def check_gtube(p: Probe) -> str:
    spamd = p.settings.milter.spamd
    if not spamd:
        raise Failed("milter.spamd is empty: spam scanning is off (setup --with-spamassassin)")
    u = p.user
    subject = f"mailwarden doctor {p.token} gtube"
    mail.send(
        p.opts.smtp,
        u.address,
        u.address,
        mail.message(u.address, u.address, subject, mail.GTUBE + "\n"),
        p.opts.timeout,
    )
    folder = p.settings.mail.junk_folder
    found = mail.imap_find(
        p.opts.imap, u.address, u.password, folder=folder, token=subject, deadline=_deadline(p)
    )
    if found is None:
        up = _ping(spamd, b"PING SPAMC/1.5\r\n\r\n", b"PONG")
        cause = "" if up else f": spamd at {spamd} not answering"
        raise Failed(f"GTUBE not found in {folder}{cause}")
    if b"X-Spam-Flag: YES" not in found:
        raise Failed(f"GTUBE filed in {folder} without X-Spam-Flag: YES")
    return f"X-Spam-Flag: YES, filed in {folder}"


def check_relay(p: Probe) -> str:
    rcpt = f"relay-test-{p.token}@mailwarden-doctor.invalid"
    data = mail.message(p.user.address, rcpt, "relay test", "")
    try:
        mail.send(p.opts.smtp, p.user.address, rcpt, data, p.opts.timeout)
    except mail.Refused as exc:
        if exc.code >= 500 and exc.code != 0:
            return f"{exc.code} {exc.text[:60]}"
        raise Failed(f"relay answered {exc.code} {exc.text[:60]} (expected 5xx)") from None
    raise Failed("OPEN RELAY: mail to a foreign domain was accepted without authentication")


def check_auth(p: Probe) -> str:
    """SMTP AUTH (Dovecot SASL) after STARTTLS: the login may relay, with its own address
    only (send-as). RCPT only, nothing is sent."""
    u = p.user
    rcpt = f"auth-test-{p.token}@mailwarden-doctor.invalid"
    other = f"not-{p.token}@{u.address.rpartition('@')[2]}"
    try:
        own, foreign = mail.auth_rcpt(
            p.opts.smtp,
            u.address,
            u.password,
            senders=[u.address, other],
            rcpt=rcpt,
            timeout=p.opts.timeout,
        )
    except mail.Refused as exc:
        raise Failed(str(exc)[:120]) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise Failed(f"SMTP AUTH at {p.opts.smtp}: {exc}") from None
    if own[0] != 250:
        raise Failed(f"authenticated relay answered {own[0]} {own[1][:60]} (expected 250)")
    if foreign[0] != 553:
        raise Failed(f"MAIL FROM another address answered {foreign[0]} (expected 553 send-as)")
    return "login after STARTTLS relays; another MAIL FROM gets 553"


def check_quota(p: Probe) -> str:
    if len(p.accounts) < 2:
        raise Failed("skipped: no over-quota test mailbox")
    full = p.accounts[1]
    data = mail.message(p.user.address, full.address, "quota test", "x\n")
    try:
        mail.send(p.opts.smtp, p.user.address, full.address, data, p.opts.timeout, size=100_000)
    except mail.Refused as exc:
        if exc.code in (452, 552):
            return f"{exc.code} {exc.text[:60]}"
        raise Failed(f"answered {exc.code} {exc.text[:60]} (expected 452/552)") from None
    raise Failed("a 100 kB message for a 1 kB mailbox was accepted")


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_metrics(p: Probe) -> str:
    where = p.opts.metrics or p.settings.metrics.listen
    if where in ("none", ""):  # switched off ([metrics] listen = "none"): nothing to ask
        return "metrics off ([metrics] listen = none): not checked"
    url = f"http://{where}/metrics"
    try:
        with _OPENER.open(url, timeout=10) as reply:
            text = reply.read().decode(errors="replace")
    except OSError as exc:
        raise Failed(f"{url}: {exc}") from None
    if "mailwarden_" not in text:
        raise Failed(f"{url} answers without mailwarden_ metrics")
    return url


def clamd_note(p: Probe) -> None:
    """Say so when clamd runs on quickstart's local EICAR signature only."""
    try:
        text = open(p.opts.clamd_conf).read()  # noqa: SIM115
    except OSError:
        return
    dirs = [ln.split()[1] for ln in text.splitlines() if ln.startswith("DatabaseDirectory ")]
    directory = dirs[0] if dirs else "/var/lib/clamav"
    if os.path.exists(os.path.join(directory, LOCAL_SIGNATURES)) and not glob.glob(
        os.path.join(directory, "*.c[vl]d")
    ):
        p.notes.append(
            f"clamd has only the local EICAR test signature ({directory}/{LOCAL_SIGNATURES}): "
            "no real virus database yet; run freshclam once the machine is online"
        )


Check = Callable[[Probe], str]

CHECKS: tuple[tuple[str, Check], ...] = (
    ("config valid", check_config),
    ("database reachable, schema current", check_database),
    ("hosted domains in no other Postfix address class", check_address_classes),
    ("test mailboxes created", create_accounts),
    ("Postfix wired to mailwarden", check_postfix),
    ("lmtpd reachable by the MTA only", check_lmtp_socket),
    ("Dovecot authenticates the test mailbox", check_dovecot),
    ("mail sent over SMTP, read over IMAP", check_imap),
    ("mail read over POP3", check_pop3),
    ("EICAR virus refused", check_eicar),
    ("GTUBE spam tagged and filed", check_gtube),
    ("unauthenticated relay refused", check_relay),
    ("SMTP AUTH: login relays, send-as enforced", check_auth),
    ("over-quota mailbox refused at RCPT", check_quota),
    ("smarthost answers (STARTTLS, AUTH)", check_smarthost),
    ("metrics endpoint answers", check_metrics),
)

__all__ = ["CHECKS", "Failed", "MailwardenError", "Options", "Probe", "clamd_note", "cleanup"]
