"""Import from the systems admins run today: PostfixAdmin (its SQL database) and
vpopmail (H-Sphere's ``vpasswd`` files and ``.qmail`` aliases).

``postfixadmin`` and ``vpopmail`` read their source into a ``plan.Source`` (plain rows);
``plan`` (pure) compares it with what mailwarden holds and lists per object ``add``,
``same`` or ``conflict``, plus hashes Dovecot cannot verify; ``apply`` runs the ``add``
items through ``mailwarden.ops`` (one transaction and one audit row per object, actor
``import:<source>``). Who calls it: ``admin/imports.py``. Maildirs are never moved.
"""
