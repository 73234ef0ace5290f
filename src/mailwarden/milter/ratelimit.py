"""Take a message the milter refuses back out of the rate-limit counters.

Who calls it: ``milter.app.Scanner`` (on its store threads) when the milter rejects or
defers a message at end of message. Postfix evaluates ``smtpd_end_of_data_restrictions``
— where policyd counts the message (contrib/postfix/main.cf.policy, ``eom``) — *before*
it hands the end of the message to the cleanup server, and only then are the milters
asked. So a message refused here (virus, spam over the reject score, mail loop, scanner
down, internal error) has already been counted. Without the refund, a client retrying
through a clamd outage would spend its hourly limit on mail that never went anywhere.

The same limits as policyd's (``core.ratelimit.applicable``: the login's own or its
domain's, the client network's), in the window that holds ``counted_at`` (the moment the
milter's end of message began, right after policyd counted), one message and the
message's recipients each; counters never go below 0.

Errors: logged by the caller, never raised into a reply: the refusal stands, and a
counter left too high only makes the limit stricter until its window ends.
"""

from __future__ import annotations

from mailwarden.core import ratelimit, sendas
from mailwarden.store import ratelimit as rate_store
from mailwarden.store.db import Database


class RateRefund:
    def __init__(self, db: Database, delimiter: str) -> None:
        self.db = db
        self.delimiter = delimiter

    def login(self, login: str) -> str:
        """The login as policyd keys its counter (``core.sendas.normal_login``)."""
        return sendas.normal_login(login, self.delimiter)

    def refund(self, login: str, client_ip: str, recipients: int, counted_at: float) -> int:
        """Take one message and ``recipients`` back; return how many counters applied."""
        now = int(counted_at)
        with self.db.transaction() as tx:
            limits = ratelimit.applicable(rate_store.limit_rows(tx), self.login(login), client_ip)
            for limit in limits:
                start, _ = ratelimit.window(limit.period, now)
                rate_store.refund(tx, limit.key, limit.period, start, 1, max(recipients, 1))
        return len(limits)
