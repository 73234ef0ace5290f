"""Message limits: recipients per message and message size per domain (Sambar's
"Maximum Recipients" and "Maximum Message Size").

Who calls it: the policy daemon: at RCPT with the count of recipients already accepted
for this message and the SIZE= from MAIL FROM; at DATA with ``recipient_count``; at
END-OF-MESSAGE with the real size.

Answers: too many recipients 452 4.5.3 (RFC 5321 §4.5.3.1.10: the client sends the rest
in another transaction); too big 552 5.3.4. A limit of 0 is unlimited; a size of 0 is
unknown and never refused.

Pure: facts in, ``Verdict`` out.
"""

from __future__ import annotations

from mailwarden.verdict import OK, Verdict


def recipients(already: int, maximum: int) -> Verdict:
    """May one more recipient join a message that has ``already`` accepted ones?"""
    if maximum > 0 and already >= maximum:
        return Verdict("4.5.3", f"Too many recipients: at most {maximum} per message")
    return OK


def recipient_count(count: int, maximum: int) -> Verdict:
    """At DATA: the message as a whole (a client that ignored our 452)."""
    if maximum > 0 and count > maximum:
        return Verdict("5.5.3", f"Too many recipients: at most {maximum} per message", code=550)
    return OK


def message_size(size: int, maximum: int) -> Verdict:
    if maximum > 0 and size > maximum:
        return Verdict("5.3.4", f"Message too big: at most {maximum} bytes for this domain")
    return OK
