"""The scanning milter for Postfix: ClamAV and SpamAssassin once per message.

Modules: ``app`` (pymilter callbacks and the ``Scanner``), ``clamav`` (clamd INSTREAM
client), ``spamassassin`` (spamd SPAMC client), ``spool`` (message buffer), ``traffic``
(per-domain accounting), ``__main__`` (wiring). Decisions live in
``mailwarden.core.scanverdict``. See docs/milter.md.
"""
