"""Recipient verification: does a hosted address lead anywhere?

Who calls it: the policy daemon at RCPT (``decide``; H-Sphere's chkuser: refuse unknown
recipients before the message is accepted, so we never have to bounce it later); the
delivery agent (``final_mailbox``, the same rules for the mailbox the MTA hands it) and
``mailwarden user show`` (``has_mail_service``, ``mailbox_stores``) for the services rule
below.

Precedence (DESIGN §5): an active mailbox or an exact alias first, the catch-all last;
a catch-all never swallows an existing mailbox, but it does accept any other local part.
Forward-only addresses are mailboxes with forwards, so they count as mailboxes. The
recipient delimiter is honoured by the caller, who looks up ``user+tag`` and ``user``.

Only local and alias domains are checked: a relay domain (backup MX) has no mailbox list.

Services: a mailbox whose ``services`` exclude ``mail`` (``user set --services
calendar,contacts``) has no IMAP/POP3 login (the ``dovecot_users`` view leaves it out), so
mail stored in it could never be read: mail that would be stored there is refused with
``5.2.1`` (``NO_MAIL``), at RCPT and again by the delivery agent. A mailbox that forwards
without keeping a copy stores nothing, so its forwards still work.

Pure: facts in, ``Verdict`` out.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.verdict import OK, Verdict

REJECTED = "Recipient address rejected: "
UNKNOWN = Verdict("5.1.1", REJECTED + "User unknown", code=550)
NO_MAIL = Verdict("5.2.1", REJECTED + "this mailbox does not receive mail", code=550)
DISABLED = Verdict("5.2.1", REJECTED + "Mailbox disabled", code=550)
MAIL_SERVICE = 1  # the ``mail`` bit of ``mailboxes.services`` (store.mailboxes.SERVICES)


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    """What the store found for the recipient (after alias-domain mapping)."""

    domain_kind: str | None  # local | alias | relay | None
    mailbox_id: int | None = None  # active mailbox (exact, or without +extension)
    alias: bool = False  # an exact alias (or without +extension)
    catchall: bool = False  # an active catch-all of the domain
    services: int = 7  # the mailbox's services bits
    forwarded: bool = False  # the mailbox has forwards
    keep_copy: bool = False  # ... and keeps a copy


def has_mail_service(services: int) -> bool:
    return bool(services & MAIL_SERVICE)


def mailbox_stores(forwarded: bool, keep_copy: bool) -> bool:
    """Does mail to the mailbox end up in its Maildir (not only forwarded)?"""
    return not forwarded or keep_copy


def mailbox_verdict(services: int, *, forwarded: bool = False, keep_copy: bool = False) -> Verdict:
    """``NO_MAIL`` when mail would be stored in a mailbox without the mail service."""
    if mailbox_stores(forwarded, keep_copy) and not has_mail_service(services):
        return NO_MAIL
    return OK


def resolution(facts: RecipientFacts) -> str:
    """``mailbox``, ``alias``, ``catchall``, ``unchecked`` (relay/foreign) or ``none``."""
    if facts.domain_kind not in ("local", "alias"):
        return "unchecked"
    if facts.mailbox_id is not None:
        return "mailbox"
    if facts.alias:
        return "alias"
    if facts.catchall:
        return "catchall"
    return "none"


def decide(facts: RecipientFacts) -> Verdict:
    """550 5.1.1 for a hosted address that resolves to nothing, 550 5.2.1 for a mailbox
    that would store mail nobody can read, else OK."""
    found = resolution(facts)
    if found == "none":
        return UNKNOWN
    if found == "mailbox":
        return mailbox_verdict(facts.services, forwarded=facts.forwarded, keep_copy=facts.keep_copy)
    return OK


def final_mailbox(*, found: bool, active: bool, services: int) -> Verdict:
    """The delivery agent's rule for a *final* mailbox address (the MTA has expanded
    aliases, forwards and alias domains): ``UNKNOWN`` when there is no such mailbox,
    ``DISABLED`` when it or its domain is switched off, ``NO_MAIL`` without the mail
    service (``mailbox_verdict``: the rule ``decide`` applies at RCPT), else OK.

    At RCPT a disabled mailbox is unknown (``decide`` sees active mailboxes only, as the
    MTA's lookup views do); an address that got past that and reaches a disabled
    mailbox is told so."""
    if not found:
        return UNKNOWN
    if not active:
        return DISABLED
    return mailbox_verdict(services)


def naming(verdict: Verdict, recipient: str) -> Verdict:
    """``verdict`` worded for a reply about one recipient of several (LMTP, the pipe
    LDA): ``<r@example.com> User unknown``."""
    if verdict.ok:
        return verdict
    text = verdict.text.removeprefix(REJECTED)
    return Verdict(verdict.dsn, f"<{recipient}> {text}", code=verdict.code)
