"""The store: every SQL statement mailwarden runs lives in this package.

Modules: ``db`` (connections, dialects, transactions), ``migrate`` (schema versions), and
one module per family of objects (``domains``, ``mailboxes``, ``aliases``, ...). Functions
take an open ``Tx`` as their first argument so callers decide the transaction boundary:
one CLI command = one transaction, so a failed command changes nothing.
"""

from mailwarden.store.db import Database, Tx

__all__ = ["Database", "Tx"]
