"""Relay control: may this recipient be accepted from this client?

Who calls it: the policy daemon (``policyd.checks``) at RCPT, for Postfix and Exim.

Rule (the Sambar "Restrict Relay" / Atmail relay-IP model, DESIGN §5):
relaying is allowed when the client authenticated with SASL, or its address lies in an
active relay network, or the recipient's domain is hosted here (local, alias or relay
domain). Anything else is refused with 554 5.7.1.

``recipient_kind`` is None when the domain is not hosted *or* the recipient could not be
parsed at all: an address form we do not understand (quotes, source routes, ``%``/``!``
hacks, ...) is never local, so it can never make us relay.

Pure: facts in, ``Verdict`` out.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.verdict import OK, Verdict

HOSTED_KINDS = frozenset({"local", "alias", "relay"})
DENIED = Verdict("5.7.1", "Relay access denied", code=554)


@dataclass(frozen=True, slots=True)
class RelayFacts:
    authenticated: bool
    client_in_relay_network: bool
    recipient_kind: str | None  # local | alias | relay, or None (not hosted / unparsable)


def decide(facts: RelayFacts) -> Verdict:
    """OK when relaying is allowed, else 554 5.7.1."""
    if facts.authenticated or facts.client_in_relay_network:
        return OK
    if facts.recipient_kind in HOSTED_KINDS:
        return OK
    return DENIED
