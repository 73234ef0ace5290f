"""The delivery agent: Maildir delivery with Maildir++ quota, spam folder and vacation.

Modules: ``headers`` (read the header block of raw bytes), ``maildir`` (create folders,
write one message durably), ``quota`` (``maildirsize``), ``spam`` and ``vacation``
(per-recipient treatment), ``submit`` (hand a generated message to the local MTA),
``deliver`` (the one delivery core), and its two adapters: ``lmtp`` (``mailwarden
lmtpd``) and ``pipe`` (``mailwarden-lda``). ``counters`` carries pipe-mode metrics to
lmtpd. See docs/delivery.md.
"""
