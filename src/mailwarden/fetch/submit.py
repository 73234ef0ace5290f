"""Hand a fetched message to the local MTA over SMTP, as any inbound message arrives.

Why SMTP to the local Postfix (``[fetch] smtp``, default 127.0.0.1:25) rather than
writing the Maildir: the message then takes the path of every inbound message - the
milter scans it (virus, spam), policyd checks the recipient and its quota, the delivery
agent files spam to Junk, applies vacation rules and counts traffic. The fetcher decides
nothing about the message itself.

Who calls it: ``fetch.run``, one ``Submitter`` per account run (one SMTP connection,
RSET between messages, re-opened after a failure).

``submit`` answers ``(outcome, reply)`` with ``plan.outcome``'s words: ``delivered``
(the MTA answered 250 at the end of DATA: it has the message in its queue),
``refused`` (5xx: e.g. a virus, an unknown mailbox, too large) or ``temporary`` (4xx,
connection refused or dropped, a timeout: the message stays on the remote server).

Errors: none raised; every failure is an outcome.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket

from mailwarden.fetch.plan import DELIVERED, REFUSED, TEMPORARY, outcome


class Submitter:
    def __init__(self, host: str, port: int, *, timeout: float, helo: str = "") -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.helo = helo or socket.getfqdn()
        self.smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        if self.smtp is None:
            smtp = smtplib.SMTP(timeout=self.timeout)
            smtp.connect(self.host, self.port)
            smtp.ehlo(self.helo)
            self.smtp = smtp
        return self.smtp

    def submit(self, message: bytes, sender: str, recipient: str) -> tuple[str, str]:
        try:
            smtp = self._open()
            refused = smtp.sendmail(sender, [recipient], message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(recipient, (451, b"recipient refused"))
            return self._after(code, text)
        except smtplib.SMTPResponseException as exc:
            return self._after(exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            return TEMPORARY, f"local MTA {self.host}:{self.port}: {_reason(exc)}"
        if refused:  # one recipient: sendmail raised already; kept for safety
            code, text = refused[recipient]
            return self._after(code, text)
        return DELIVERED, "250"

    def _after(self, code: int, text: bytes | str) -> tuple[str, str]:
        result = outcome(int(code))
        reply = f"{code} {_decode(text)}"
        if self.smtp is not None:
            try:
                self.smtp.rset()
            except (OSError, smtplib.SMTPException):
                self.close()
        return result, reply

    def close(self) -> None:
        if self.smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self.smtp.quit()
            with contextlib.suppress(OSError):
                self.smtp.close()
            self.smtp = None


def _decode(text: bytes | str) -> str:
    value = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return " ".join(value.split())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


__all__ = ["DELIVERED", "REFUSED", "TEMPORARY", "Submitter"]
