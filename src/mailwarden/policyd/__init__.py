"""mailwarden policyd: the Postfix/Exim policy service (see docs/policyd.md).

Modules: ``protocol`` (sans-IO codec), ``exim`` (Exim reply line), ``checks`` (the
decisions, calling ``core``), ``cache`` (TTL lookups), ``state`` (per-``instance``
transactions), ``server`` (asyncio), ``__main__`` (wiring).
"""
