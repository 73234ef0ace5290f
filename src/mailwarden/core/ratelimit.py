"""Rate limits: messages and recipients per hour or per day, per login or client.

Who calls it: the policy daemon. At RCPT it asks ``decide`` whether one more recipient
(and, for the first recipient, one more message) still fits; at END-OF-MESSAGE, for mail
that was accepted, it adds one message and ``recipient_count`` recipients to every
counter that a limit applies to (``store.ratelimit.add_usage``). The milter, which
Postfix asks only after END-OF-MESSAGE, takes the same message back out of the same
counters (``applicable`` + ``store.ratelimit.refund``) when it rejects or defers it.

Which limits apply (``select``):
    login   the limit of the mailbox itself, else its domain's limit (the domain row is a
            default applied to *each* mailbox, counted per mailbox, never shared);
    client  the limit of the most specific ``client:<network>`` holding the client IP,
            counted per client address.
Windows are fixed and aligned to UTC: an hour window starts at a full hour, a day window
at 00:00 UTC. Messages and recipients are separate counters with separate maxima (one
message to 50 recipients is 1 message and 50 recipients); 0 means no limit.

Refusal: 450 4.7.1 naming what was exceeded and when the window resets.

Pure: facts in, ``Verdict`` out; ``now`` is passed in.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from mailwarden.core import relaynet
from mailwarden.errors import UsageError
from mailwarden.verdict import OK, Verdict

CLIENT_PREFIX = "client:"
PERIODS = {"hour": 3600, "day": 86400}


@dataclass(frozen=True, slots=True)
class Limit:
    """One rate_limits row, with the counter it is checked against."""

    key: str  # counter key: "login:<address>" or "client:<ip>"
    period: str  # hour | day
    max_messages: int
    max_recipients: int


@dataclass(frozen=True, slots=True)
class Usage:
    messages: int = 0
    recipients: int = 0


def window(period: str, now: int) -> tuple[int, int]:
    """(start, end) of the fixed window of ``period`` holding ``now``."""
    length = PERIODS[period]
    start = now - now % length
    return start, start + length


def select(
    rows: Iterable[tuple[str, str, int, int]], scope: str, fallback: str | None
) -> dict[str, tuple[int, int]]:
    """Per period, the (max_messages, max_recipients) of ``scope``, else of ``fallback``.

    ``rows`` are (scope, period, max_messages, max_recipients).
    """
    found: dict[str, tuple[int, int]] = {}
    for want in (fallback, scope):  # scope last: the mailbox row overrides its domain's
        for row_scope, period, messages, recipients in rows:
            if want is not None and row_scope == want and period in PERIODS:
                found[period] = (messages, recipients)
    return found


def applicable(
    rows: Iterable[tuple[str, str, int, int]], login: str, client_ip: str
) -> list[Limit]:
    """The limits one message counts against: the login's (its own rows, else its
    domain's, counted under ``login:<address>``) and the most specific client network's
    (counted under ``client:<ip>``). ``login`` is normalised (lower case) or ""; rows are
    (scope, period, max_messages, max_recipients). Unlimited ones are left out."""
    rows = tuple(rows)
    out: list[Limit] = []
    if login:
        fallback = login.rpartition("@")[2] or None
        for period, (m, r) in sorted(select(rows, login, fallback).items()):
            out.append(Limit(f"login:{login}", period, m, r))
    scope = client_scope((row[0] for row in rows), client_ip)
    client = relaynet.parse_client(client_ip)
    if scope is not None and client is not None:
        for period, (m, r) in sorted(select(rows, scope, None).items()):
            out.append(Limit(f"{CLIENT_PREFIX}{client}", period, m, r))
    return [lim for lim in out if lim.max_messages > 0 or lim.max_recipients > 0]


def decide(
    checks: Iterable[tuple[Limit, Usage]], *, new_message: bool, pending: int, now: int
) -> Verdict:
    """May one more recipient be accepted?

    ``pending`` = recipients already accepted for this message (not yet counted);
    ``new_message`` = this is the message's first recipient (its message is not counted).
    """
    hit = first_exceeded(checks, new_message=new_message, pending=pending)
    return OK if hit is None else refused(hit[0], hit[1], now)


def first_exceeded(
    checks: Iterable[tuple[Limit, Usage]], *, new_message: bool, pending: int
) -> tuple[Limit, str] | None:
    """The first limit one more recipient would break, with what it limits."""
    for limit, used in checks:
        what = _exceeded(limit, used, new_message=new_message, pending=pending)
        if what:
            return limit, what
    return None


def _exceeded(limit: Limit, used: Usage, *, new_message: bool, pending: int) -> str:
    messages = used.messages + (1 if new_message else 0)
    if limit.max_messages > 0 and messages > limit.max_messages:
        return f"{limit.max_messages} messages per {limit.period}"
    if limit.max_recipients > 0 and used.recipients + pending + 1 > limit.max_recipients:
        return f"{limit.max_recipients} recipients per {limit.period}"
    return ""


def refused(limit: Limit, what: str, now: int) -> Verdict:
    _, reset = window(limit.period, now)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(reset))
    return Verdict("4.7.1", f"Rate limit reached ({what}); try again after {when}")


def client_scope(scopes: Iterable[str], client_ip: str) -> str | None:
    """The most specific ``client:<network>`` scope holding ``client_ip``, or None."""
    client = relaynet.parse_client(client_ip)
    if client is None:
        return None
    best: tuple[int, str] | None = None
    for scope in scopes:
        if not scope.startswith(CLIENT_PREFIX):
            continue
        net = _network(scope[len(CLIENT_PREFIX) :])
        if net is None or not relaynet.contains(net, client):
            continue
        if best is None or net.prefixlen > best[0]:
            best = (net.prefixlen, scope)
    return None if best is None else best[1]


def _network(text: str) -> relaynet.IPNetwork | None:
    try:
        return relaynet.parse_cidr(text).network
    except UsageError:  # a damaged row limits nothing
        return None
