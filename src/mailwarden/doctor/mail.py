"""Small SMTP/IMAP/POP3 helpers for the doctor (stdlib clients, loopback, timeouts)."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import ssl
import time
from email.message import EmailMessage

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR" + b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


class Refused(Exception):
    """The server answered a 4xx/5xx; ``code`` and ``text`` say which."""

    def __init__(self, stage: str, code: int, text: str) -> None:
        super().__init__(f"{stage}: {code} {text}" if code else f"{stage}: {text}")
        self.code = code
        self.text = text


def split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def message(sender: str, rcpt: str, subject: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg.set_content(body)
    return msg.as_bytes()


def send(server: str, sender: str, rcpt: str, data: bytes, timeout: float, *, size: int = 0) -> str:
    """One SMTP transaction; Refused on a refusal at MAIL, RCPT or DATA; returns the reply."""
    host, port = split(server)
    with smtplib.SMTP(host, port, timeout=timeout, local_hostname="doctor.mailwarden.invalid") as s:
        s.ehlo()
        options = [f"SIZE={size}"] if size and s.has_extn("size") else []
        code, text = s.mail(sender, options)
        if code >= 400:
            raise Refused("MAIL", code, text.decode(errors="replace"))
        code, text = s.rcpt(rcpt)
        if code >= 400:
            s.rset()
            raise Refused("RCPT", code, text.decode(errors="replace"))
        code, text = s.data(data)
        if code >= 400:
            raise Refused("DATA", code, text.decode(errors="replace"))
        return text.decode(errors="replace")


def auth_rcpt(
    server: str, user: str, password: str, *, senders: list[str], rcpt: str, timeout: float
) -> list[tuple[int, str]]:
    """STARTTLS, AUTH as user, then for each sender MAIL + RCPT rcpt + RSET: the RCPT
    replies. Nothing is sent. Refused names the stage when STARTTLS or AUTH fails."""
    host, port = split(server)
    # A doctor talks to its own Postfix on loopback, often with a self-signed
    # certificate: the check is that TLS and AUTH work, not who signed the certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(host, port, timeout=timeout, local_hostname="doctor.mailwarden.invalid") as s:
        s.ehlo()
        if not s.has_extn("starttls"):
            raise Refused("STARTTLS", 0, "not offered (smtpd_tls_cert_file/smtpd_tls_key_file?)")
        s.starttls(context=context)
        s.ehlo()
        if not s.has_extn("auth"):
            raise Refused("AUTH", 0, "not offered after STARTTLS (smtpd_sasl_auth_enable?)")
        try:
            s.login(user, password)
        except smtplib.SMTPAuthenticationError as exc:
            error = exc.smtp_error
            why = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
            raise Refused("AUTH", exc.smtp_code, why) from None
        replies = []
        for sender in senders:
            code, text = s.mail(sender)
            if code >= 400:
                raise Refused("MAIL", code, text.decode(errors="replace"))
            code, text = s.rcpt(rcpt)
            replies.append((code, text.decode(errors="replace")))
            s.rset()
        return replies


def imap_find(
    server: str, user: str, password: str, *, folder: str, token: str, deadline: float
) -> bytes | None:
    """The message whose Subject holds token in folder, polling until deadline."""
    host, port = split(server)
    while True:
        with imaplib.IMAP4(host, port, timeout=10) as imap:
            imap.login(user, password)
            typ, _ = imap.select(f'"{folder}"', readonly=True)
            if typ == "OK":
                typ, found = imap.search(None, "SUBJECT", f'"{token}"')
                ids = found[0].split() if typ == "OK" and found and found[0] else []
                if ids:
                    typ, parts = imap.fetch(ids[-1], "(RFC822)")
                    for part in parts:
                        if isinstance(part, tuple):
                            return bytes(part[1])
            imap.logout()
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def pop3_find(server: str, user: str, password: str, token: str) -> bool:
    host, port = split(server)
    pop = poplib.POP3(host, port, timeout=10)
    try:
        pop.user(user)
        pop.pass_(password)
        count, _ = pop.stat()
        for n in range(1, count + 1):
            _, lines, _ = pop.top(n, 0)
            if any(token.encode() in line for line in lines):
                return True
        return False
    finally:
        pop.quit()
