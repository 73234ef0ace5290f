"""Vacation replies for one delivered message (RFC 3834, RFC 5230).

What it does
    ``respond`` gathers the facts from the ``DeliveryStore`` (the mailbox's vacation,
    its addresses and aliases) and asks ``core.vacation`` (``in_effect``, then
    ``suppression``); when a reply is due it claims the (mailbox, sender) slot in the
    reply log atomically, builds the reply and submits it through the local MTA
    (``delivery.submit``).

The reply: to the envelope sender only, envelope sender ``<>``, ``From:`` the user,
``Subject:`` the one set with ``vacation set --subject`` (``Auto: <original>`` only when
none is stored, RFC 3834 §3.1.5), ``In-Reply-To`` and ``References`` (RFC 5230 §5.8),
``Auto-Submitted: auto-replied`` (RFC 3834 §3.1.7), plus ``Precedence: bulk`` and
``X-Auto-Response-Suppress: All`` as Pigeonhole sends, so other responders stay quiet.

Returns the metric result: ``"sent"``, ``"suppressed"``, or None when the mailbox has no
vacation in effect (not counted). Errors: store errors propagate; ``SubmitError`` too
(the caller logs both; the delivery itself already succeeded).
"""

from __future__ import annotations

import logging
import time

from mailwarden.core import vacation as rules
from mailwarden.delivery import headers as hdr
from mailwarden.delivery.submit import Submitter
from mailwarden.store.facts import DeliveryStore, Recipient

log = logging.getLogger("mailwarden.lda")

_RECIPIENT_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")


def _incoming(sender: str, headers: hdr.Headers) -> rules.Incoming:
    wanted = ("auto-submitted", "precedence", "x-auto-response-suppress")
    values = {name: v for name in wanted if (v := headers.get(name)) is not None}
    listed: list[str] = []
    for name in _RECIPIENT_HEADERS:
        listed.extend(headers.get_all(name))
    return rules.Incoming(sender, values, headers.names(), hdr.addresses(listed))


def respond(
    store: DeliveryStore,
    submitter: Submitter,
    rcpt: Recipient,
    sender: str,
    headers: hdr.Headers,
    *,
    envelope_rcpt: str = "",
    now: int | None = None,
) -> str | None:
    """Send the vacation reply if one is due (see the module doc); the metric result."""
    now = int(time.time()) if now is None else now
    vac = store.vacation(rcpt.id)
    if vac is None or not rules.in_effect(vac, now):
        return None
    mine = store.user_addresses(rcpt)
    if envelope_rcpt:
        mine.add(envelope_rcpt.lower())  # RFC 5230 §4.5: the final envelope recipient
    msg = _incoming(sender, headers)
    reason = rules.suppression(vac, msg, mine, now=now, last_sent=None)
    if reason is None and not store.claim_vacation_reply(rcpt.id, sender, now, vac.interval):
        reason = "recent"
    if reason is not None:
        log.info("vacation rcpt=<%s> sender=<%s> suppressed=%s", rcpt.address, sender, reason)
        return "suppressed"
    submitter.send(sender, build_reply(rcpt.address, sender, vac, headers, now))
    log.info("vacation rcpt=<%s> sender=<%s> sent", rcpt.address, sender)
    return "sent"


def build_reply(
    user: str, sender: str, vac: rules.Vacation, headers: hdr.Headers, now: int
) -> bytes:
    """The reply message (RFC 5322, UTF-8 body, LF line ends for sendmail/smtplib)."""
    from datetime import UTC, datetime
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    msg = EmailMessage()
    msg["From"] = user
    msg["To"] = sender
    msg["Subject"] = rules.reply_subject(vac.subject, headers.get("subject"))
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    msg["Message-ID"] = make_msgid(domain=user.rpartition("@")[2] or None)
    original = (headers.get("message-id") or "").strip()
    if original:
        msg["In-Reply-To"] = original
        refs = " ".join([*(headers.get("references") or "").split(), original])
        msg["References"] = refs
    msg["Auto-Submitted"] = "auto-replied"
    msg["Precedence"] = "bulk"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(vac.body)
    return msg.as_bytes()
