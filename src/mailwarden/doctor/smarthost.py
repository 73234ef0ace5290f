"""The doctor's "smarthost answers" check (docs/smarthost.md).

Asks Postfix for its ``relayhost`` (``postconf -h``, the value setup wrote); none means
the check is not needed. Otherwise it connects to that server the way Postfix will:
EHLO, STARTTLS must be offered (Postfix requires TLS to the smarthost and would defer
all mail), EHLO again, AUTH must be offered inside TLS. The password is never sent; the
check only makes sure Postfix's password map has an entry for the relayhost. With
``[smarthost] tls = "secure"`` the certificate is checked as Postfix will check it (the
``cafile``, else the system CAs).

Who calls it: ``doctor.checks`` (its CHECKS table). Errors: ``Failed`` naming the cause
(no answer, no STARTTLS, no AUTH, a certificate that does not verify, no password).
A relayhost without brackets is looked up in DNS by Postfix (MX); the doctor connects
to the name itself.
"""

from __future__ import annotations

import smtplib
import ssl
import subprocess
from typing import TYPE_CHECKING

from mailwarden.doctor.failed import Failed
from mailwarden.setup.smarthost import host_port

if TYPE_CHECKING:
    from mailwarden.doctor.checks import Probe


def _postconf(postfix_dir: str, key: str) -> str:
    proc = subprocess.run(
        ["postconf", "-c", postfix_dir, "-h", key],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _context(p: Probe) -> ssl.SSLContext:
    s = p.settings.smarthost
    if s.tls == "secure":
        return ssl.create_default_context(cafile=s.cafile or None)
    context = ssl.create_default_context()  # "encrypt": TLS, the certificate not checked
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _has_password(postfix_dir: str, relayhost: str) -> bool:
    maps = _postconf(postfix_dir, "smtp_sasl_password_maps")
    for spec in maps.replace(",", " ").split():
        proc = subprocess.run(
            ["postmap", "-c", postfix_dir, "-q", relayhost, spec],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return True
    return False


def check_smarthost(p: Probe) -> str:
    relayhost = _postconf(p.opts.postfix_dir, "relayhost")
    if not relayhost:
        return "not configured (no relayhost: mail is delivered directly)"
    host, port, mx = host_port(relayhost)
    # Without brackets Postfix asks DNS for the MX hosts; the doctor tries the name itself.
    where = f"{relayhost} (connecting to {host}:{port}, not its MX hosts)" if mx else relayhost
    try:
        with smtplib.SMTP(host, port, timeout=p.opts.timeout) as smtp:
            smtp.ehlo("mailwarden-doctor.invalid")
            if not smtp.has_extn("starttls"):
                raise Failed(f"{where} offers no STARTTLS: Postfix (TLS required) defers all mail")
            smtp.starttls(context=_context(p))
            smtp.ehlo("mailwarden-doctor.invalid")
            if not smtp.has_extn("auth"):
                raise Failed(f"{where} offers no AUTH after STARTTLS")
            mechanisms = smtp.esmtp_features["auth"].strip()
    except ssl.SSLError as exc:
        raise Failed(f"{where}: TLS failed: {exc}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise Failed(f"{where} does not answer: {exc}") from None
    if not _has_password(p.opts.postfix_dir, relayhost):
        raise Failed(f"no password for {relayhost} in smtp_sasl_password_maps")
    return f"{where}: STARTTLS, AUTH {mechanisms} (password not sent)"
