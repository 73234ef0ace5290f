"""lmtpd: the LMTP adapter of the delivery core (``mailwarden lmtpd``).

Modules: ``protocol`` (sans-IO LMTP codec), ``connection`` (one asyncio connection),
``server`` (listeners, the deliverer, metrics, ``main``) and ``workers`` (several
processes). The delivery itself is ``mailwarden.delivery``; see docs/delivery.md.
"""
