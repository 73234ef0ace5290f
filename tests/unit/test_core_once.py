"""Rules that used to live twice (in the store, inline in delivery) now live once in core.

``core.recipient.final_mailbox`` (the delivery agent's 5.1.1 / 5.2.1), the access decision
``core.spamsettings.access_decision`` (policyd and the milter; ``store.spam`` only reads
the rows), ``core.vacation.in_effect`` (delivery, ``vacation show``) and the layers'
``enforced`` set, and the login key of send-as and the rate counters
(``core.sendas.normal_login``, policyd and the milter's refund), by table.
"""

from __future__ import annotations

import pytest

from mailwarden.core import recipient, vacation
from mailwarden.core.spamsettings import AccessLists, Layer, Layers, access_decision


@pytest.mark.parametrize(
    ("found", "active", "services", "dsn", "text"),
    [
        (False, False, 0, "5.1.1", "<r@x.test> User unknown"),
        (True, False, 7, "5.2.1", "<r@x.test> Mailbox disabled"),
        (True, True, 6, "5.2.1", "<r@x.test> this mailbox does not receive mail"),
        (True, True, 1, "2.0.0", "Ok"),
    ],
)
def test_final_mailbox(found: bool, active: bool, services: int, dsn: str, text: str) -> None:
    verdict = recipient.final_mailbox(found=found, active=active, services=services)
    named = recipient.naming(verdict, "r@x.test")
    assert (named.dsn, named.text) == (dsn, text)
    assert named.smtp_code == (250 if dsn == "2.0.0" else 550)


def test_final_mailbox_and_rcpt_agree_on_the_services_rule() -> None:
    at_rcpt = recipient.decide(recipient.RecipientFacts("local", mailbox_id=1, services=6))
    in_delivery = recipient.final_mailbox(found=True, active=True, services=6)
    assert at_rcpt == in_delivery == recipient.NO_MAIL


LISTS = AccessLists(
    (
        ("global", "block", "@bad.test"),
        ("domain", "allow", "friend@bad.test"),
        ("mailbox", "allow", "192.0.2.66"),
    )
)


@pytest.mark.parametrize(
    ("lists", "sender", "client", "expected"),
    [
        (AccessLists(), "x@bad.test", "192.0.2.1", None),
        (LISTS, "x@bad.test", "203.0.113.1", "block"),
        (LISTS, "friend@bad.test", "203.0.113.1", "allow"),
        (LISTS, "x@good.test", "192.0.2.66", "allow"),
        (LISTS, "x@good.test", "203.0.113.1", None),
        # the global layer enforced: its block is final
        (AccessLists(LISTS.entries, frozenset({"global"})), "friend@bad.test", "1.2.3.4", "block"),
    ],
)
def test_access_decision(lists: AccessLists, sender: str, client: str, expected: str) -> None:
    assert access_decision(lists, sender, client) == expected


def test_layers_enforced() -> None:
    layers = Layers(Layer("folder", 5.0), Layer(enforce=True), None)
    assert layers.enforced == frozenset({"domain"})
    assert layers.enforce_flags == {"global": False, "domain": True, "mailbox": False}


@pytest.mark.parametrize(
    ("starts", "ends", "active", "expected"),
    [
        (None, None, True, True),
        (None, None, False, False),
        (100, None, True, True),
        (101, None, True, False),
        (None, 100, True, False),  # ends_at is exclusive
        (None, 101, True, True),
    ],
)
def test_vacation_in_effect(
    starts: int | None, ends: int | None, active: bool, expected: bool
) -> None:
    vac = vacation.Vacation("s", "b", starts, ends, 60, active)
    assert vacation.in_effect(vac, 100) is expected
    assert vacation.in_effect(None, 100) is False


@pytest.mark.parametrize(
    ("login", "key"),
    [
        ("", ""),
        ("Alice@Example.TEST", "alice@example.test"),
        ("alice+x@example.test", "alice+x@example.test"),  # the login as given, not stripped
        (" Not An Address ", "not an address"),
    ],
)
def test_normal_login_is_one_rule_for_policyd_and_the_milter(login: str, key: str) -> None:
    from mailwarden.core import sendas

    assert sendas.normal_login(login) == key
