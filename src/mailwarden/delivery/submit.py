"""Hand a message the delivery agent generated (a vacation reply) to the local MTA.

Who calls it: ``delivery.vacation``. Going through the MTA (rather than writing into the
sender's Maildir) means the reply is queued, retried, signed and logged like any mail.

Two ways, chosen by ``[lda] submit``:
    ``sendmail``  run ``[lda] sendmail -i -f <> -- RCPT`` with the message on stdin
                  (Postfix's sendmail(1) queues it through postdrop/pickup)
    ``smtp``      SMTP to ``[lda] smtp_host``:``smtp_port`` (127.0.0.1:25) with
                  ``MAIL FROM:<>``

The envelope sender is always null (RFC 5230 §5.1, RFC 3834 §3.3): a bounce of the reply
goes nowhere, so a reply can never start a loop.
Errors: ``SubmitError`` with a one-line reason; the caller logs it (the delivery itself
has already succeeded and is not affected).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailwarden.config import LdaSettings

TIMEOUT = 60.0


class SubmitError(Exception):
    """The MTA did not accept the message."""


class Submitter:
    """Submits messages the way ``[lda]`` says."""

    def __init__(self, settings: LdaSettings) -> None:
        self.settings = settings

    def send(self, recipient: str, message: bytes) -> None:
        if self.settings.submit == "smtp":
            self._smtp(recipient, message)
        else:
            self._sendmail(recipient, message)

    def _sendmail(self, recipient: str, message: bytes) -> None:
        import subprocess  # only when a reply is sent: the pipe LDA starts once per message

        argv = [self.settings.sendmail, "-i", "-f", "<>", "--", recipient]
        try:
            done = subprocess.run(
                argv, input=message, capture_output=True, timeout=TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SubmitError(f"{self.settings.sendmail}: {exc}") from exc
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SubmitError(
                f"{self.settings.sendmail} exited {done.returncode}: {err[-1] if err else ''}"
            )

    def _smtp(self, recipient: str, message: bytes) -> None:
        import smtplib

        host, port = self.settings.smtp_host, self.settings.smtp_port
        try:
            with smtplib.SMTP(host, port, timeout=TIMEOUT) as client:
                client.sendmail("", [recipient], message)
        except (OSError, smtplib.SMTPException) as exc:
            raise SubmitError(f"smtp {host}:{port}: {exc}") from exc
