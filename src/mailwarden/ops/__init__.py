"""The operations layer: every admin action, its checks, one transaction, one audit row.

Who calls it: the CLI (``admin/*.py``: parse arguments, call one function here, print),
the REST API (``api/``: parse the request, call one function here, map the result) and,
later, the web admin. A rule lives here or below (``store/``, ``core/``), never in a
caller, so the CLI and the API give the same answers for the same actions.

Every function takes an ``Env`` (database + mail settings) and an ``Actor`` (who is
asking, with which role and domain scope, from where; ``base.Actor``). Changing
functions check the role, run in one transaction and write one ``audit_log`` row with
the object's record before and after (secrets dropped: ``base.scrub``). Readers return
plain records (dicts of JSON values) and ``Page`` objects for lists.

Roles: ``admin`` may do everything; ``domain-admin`` sees only its domains, and every
object of another domain is ``NotFound`` exactly as if it did not exist; ``readonly``
reads everything and changes nothing (``Forbidden``); ``user`` (a mailbox logged in with
its password) only reaches its own mailbox through ``ops.me``.

Errors (``mailwarden.errors``): ``UsageError`` (bad input, limits), ``NotFound``,
``Conflict``, ``Stale`` (If-Match no longer matches), ``Forbidden`` (role), and the store's
``StoreError``/``StoreUnavailable``.
"""
