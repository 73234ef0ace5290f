"""The mail fetcher (Sambar's "Mail Fetcher", fetchmail's job): collect mail from remote
POP3 and IMAP accounts into local mailboxes. docs/fetch.md.

Modules: ``plan`` (pure decisions: which messages are new, which may be deleted, which
seen entries can go, the trace header), ``secret`` (the key file and the encrypted
remote passwords), ``remote`` (POP3 and IMAP sessions over the standard library's
``poplib``/``imaplib``), ``submit`` (hand a message to the local MTA over SMTP), ``run``
(one run of one account: lock, fetch, submit, record, delete), ``daemon`` (``mailwarden
fetchd``: runs the accounts that are due, on the daemon skeleton).
"""
