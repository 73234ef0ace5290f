"""Quota at RCPT: refuse mail for a mailbox that is full before the message is sent.

Who calls it: the policy daemon at RCPT (and it works with any LDA, not only Dovecot:
usage comes from ``quota_usage``, which the mailwarden LDA keeps).

Rule: with a byte quota, the mailbox is full when ``used + size > quota`` (``size`` is the
SIZE= announced at MAIL FROM; 0 when unknown, then ``used >= quota`` is full); with a
message quota, when ``used_messages + 1 > quota_messages``. 0 means unlimited.
The answer is 452 4.2.2 (RFC 3463: a full mailbox is a persistent transient failure) or,
with ``mail.quota_full_tempfail = false``, 552 5.2.2.

Pure: facts in, ``Verdict`` out.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.verdict import OK, Verdict

TEXT = "Mailbox full: quota exceeded"


@dataclass(frozen=True, slots=True)
class QuotaFacts:
    quota_bytes: int
    quota_messages: int
    used_bytes: int
    used_messages: int
    size: int = 0  # 0 = unknown


def is_full(f: QuotaFacts) -> bool:
    if f.quota_bytes > 0:
        if f.size > 0 and f.used_bytes + f.size > f.quota_bytes:
            return True
        if f.used_bytes >= f.quota_bytes:
            return True
    return f.quota_messages > 0 and f.used_messages + 1 > f.quota_messages


def decide(f: QuotaFacts, *, tempfail: bool = True) -> Verdict:
    if not is_full(f):
        return OK
    return Verdict("4.2.2", TEXT) if tempfail else Verdict("5.2.2", TEXT)
