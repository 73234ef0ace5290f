"""The delivery core: Maildir delivery with Maildir++ quota, spam folder and vacation.

Modules: ``headers`` (read the header block of raw bytes), ``maildir`` (create folders,
write one message durably), ``quota`` (``maildirsize``), ``usage`` (quota usage kept in
the store), ``vacation`` (per-recipient replies), ``submit`` (hand a generated message to
the local MTA), ``deliver`` (the one delivery core) and ``counters`` (pipe-mode metrics
carried to lmtpd). Its two adapters live beside it, as Dovecot keeps lib-lda apart from
lda and lmtp: ``mailwarden.lmtpd`` and ``mailwarden.pipe``. See docs/delivery.md.
"""
