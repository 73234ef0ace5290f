"""``mailwarden doctor``: the end-to-end diagnostic a mail admin runs after setup and
after every change.

It prints one line per check (``ok`` or ``FAIL`` and the cause) and ``N passed,
M failed``; the exit status is 1 when any check failed. Checks (``checks``): the
configuration; the database and its schema; every hosted domain in its own Postfix
address class only (not also in ``mydestination``, where local(8) would bounce its
mail); Postfix's wiring (milter, policy service,
transport, ``postmap -q`` answering for a test account); Dovecot authenticating the test
account (``doveadm auth test``); a message sent over SMTP read back over IMAP and POP3;
EICAR refused; GTUBE tagged and filed into the Junk folder; an unauthenticated relay
refused; SMTP AUTH after STARTTLS letting the test account relay with its own address
and refusing another (send-as, RCPT only, nothing sent); an over-quota test mailbox
refused at RCPT; the metrics endpoint.

Every check has a timeout. The test mailboxes (random names in the first local domain)
and their Maildirs are removed in a ``finally``, whatever happened.
"""
