"""Send-as: may this SASL login use this envelope sender (MAIL FROM)?

Who calls it: the policy daemon at RCPT (where Postfix also passes ``sender``).

Rule (DESIGN §5): an authenticated login may send as its own address, its aliases (exact
alias sources that deliver to it), the same local part in its alias domains, and any
address or ``@domain`` it was explicitly granted. A ``+extension`` on the sender is
ignored (``alice+list@`` belongs to ``alice@``). The null sender (bounces, ``<>``) is
always allowed. An unauthenticated client is not this rule's business (relay control
and SPF are). A sender that cannot be parsed is refused: it owns nothing.

A catch-all does *not* make every address of its domain the owner's: that would let the
catch-all's destination forge any colleague.

Refusal: 553 5.7.1 (RFC 5321 §3.3 "mailbox name not allowed").

Pure: facts in, ``Verdict`` out.
"""

from __future__ import annotations

from collections.abc import Collection

from mailwarden.address import parse_address, strip_extension
from mailwarden.errors import UsageError
from mailwarden.verdict import OK, Verdict


def normal_login(login: str, delimiter: str = "+") -> str:
    """A SASL login as policyd keys it (send-as, the ``login:`` rate-limit counters) and
    the milter takes refunds from those counters: the normalised address, or the text
    lower-cased when it is no address; ``""`` for no login."""
    if not login:
        return ""
    try:
        return str(parse_address(login, delimiter=delimiter))
    except UsageError:
        return login.strip().lower()


def not_owned(login: str) -> Verdict:
    return Verdict("5.7.1", f"Sender address rejected: not owned by user {login}", code=553)


def decide(
    login: str,
    sender: str,
    owned: Collection[str],
    *,
    delimiter: str = "+",
) -> Verdict:
    """``owned`` holds normalised addresses and ``@domain`` grants of ``login``."""
    if not login or not sender:
        return OK
    try:
        addr = parse_address(sender, delimiter=delimiter)
    except UsageError:
        return not_owned(login)
    bare = strip_extension(addr, delimiter) if delimiter else addr
    if str(addr) in owned or str(bare) in owned or f"@{addr.domain}" in owned:
        return OK
    return not_owned(login)
