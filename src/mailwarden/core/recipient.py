"""Recipient verification: does a hosted address lead anywhere?

Who calls it: the policy daemon at RCPT (H-Sphere's chkuser: refuse unknown recipients
before the message is accepted, so we never have to bounce it later).

Precedence (DESIGN §5): an active mailbox or an exact alias first, the catch-all last;
a catch-all never swallows an existing mailbox, but it does accept any other local part.
Forward-only addresses are mailboxes with forwards, so they count as mailboxes. The
recipient delimiter is honoured by the caller, who looks up ``user+tag`` and ``user``.

Only local and alias domains are checked: a relay domain (backup MX) has no mailbox list.

Pure: facts in, ``Verdict`` out.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.verdict import OK, Verdict

UNKNOWN = Verdict("5.1.1", "Recipient address rejected: User unknown", code=550)


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    """What the store found for the recipient (after alias-domain mapping)."""

    domain_kind: str | None  # local | alias | relay | None
    mailbox_id: int | None = None  # active mailbox (exact, or without +extension)
    alias: bool = False  # an exact alias (or without +extension)
    catchall: bool = False  # an active catch-all of the domain


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
    """550 5.1.1 for a hosted address that resolves to nothing, else OK."""
    return UNKNOWN if resolution(facts) == "none" else OK
