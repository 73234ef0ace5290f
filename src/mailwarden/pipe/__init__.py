"""pipe: the pipe adapter of the delivery core (``mailwarden-lda``, ``mailwarden deliver``).

``lda`` reads one message from stdin and answers in sysexits; the delivery itself is
``mailwarden.delivery``. See docs/delivery.md.
"""
