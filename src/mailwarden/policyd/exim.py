"""Exim flavour of the policy protocol: one request per ``${readsocket}``, one reply line.

Who calls it: ``policyd.protocol.encode`` for requests with
``request=exim_access_policy``; ``contrib/exim/policy.conf`` holds the ACLs that send them.

Exim has no ``instance``: the ACLs make one per message in ``acl_smtp_mail``
(``acl_m_pol_id``) and send it with every request, so recipient counts and END-OF-MESSAGE
accounting work as for Postfix. The RCPT ACL sends ``protocol_state=RCPT``; the DATA ACL
(after the body, Exim's ``acl_smtp_data``) sends ``protocol_state=END-OF-MESSAGE`` with
``size=$message_size`` and ``recipient_count=$recipients_count``; with
``sasl_username=$authenticated_id`` that request is also where an Exim site's traffic
``out`` is counted (``[traffic] counter = "daemons"``, ``mailwarden.accounting``; traffic
``in`` is lmtpd's), so ``mailwarden traffic`` reads the same as on a Postfix site.

Reply line (DESIGN §4, "Exim line"), the same decisions as Postfix's ``action=``:

``ok``                          go on
``ok Header: value``            go on and add this header (allow-listed mail)
``defer <code> <dsn> <text>``   temporary: ``defer 451 4.3.0 ...``, ``defer 450 4.7.1 ...``
``deny <code> <dsn> <text>``    permanent: ``deny 554 5.7.1 Relay access denied``

The ACL passes everything after the first word as ``message =``; Exim uses a leading
SMTP code whose first digit matches the verb, so the wire reply equals Postfix's.
Readsocket half-closes after sending, the server answers and then sees EOF and closes.

Pure: no I/O.
"""

from __future__ import annotations

from mailwarden.verdict import Verdict

EXIM = "exim_access_policy"


def exim_line(verdict: Verdict) -> str:
    """``ok [Header: value]``, ``defer ...`` or ``deny ...``."""
    if verdict.ok:
        if verdict.headers:
            name, value = verdict.headers[0]
            return f"ok {name}: {value}"
        return "ok"
    word = "defer" if verdict.temporary else "deny"
    return f"{word} {verdict.smtp_code} {verdict.dsn} {verdict.text}".rstrip()
