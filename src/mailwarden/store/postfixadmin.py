"""Read a PostfixAdmin 3.x database (MariaDB/MySQL or SQLite): the source of
``mailwarden import postfixadmin``. SELECTs only, on the tables PostfixAdmin's
``upgrade.php`` creates (``domain``, ``mailbox``, ``alias``, ``alias_domain``,
``vacation``; no ``database_prefix``); rows come back as plain dicts.

Who calls it: ``imports.postfixadmin`` with a ``Tx`` of a read-only transaction.
Errors: ``StoreError`` when a table or column is missing (not a PostfixAdmin database).
"""

from __future__ import annotations

from mailwarden.store.db import Row, Tx


def domains(tx: Tx) -> list[Row]:
    return tx.all(
        "SELECT domain, description, aliases, mailboxes, maxquota, quota, transport,"
        " backupmx, active FROM domain WHERE domain <> 'ALL' ORDER BY domain"
    )


def mailboxes(tx: Tx) -> list[Row]:
    return tx.all(
        "SELECT username, password, name, maildir, quota, local_part, domain, active"
        " FROM mailbox ORDER BY username"
    )


def aliases(tx: Tx) -> list[Row]:
    return tx.all("SELECT address, goto, domain, active FROM alias ORDER BY address")


def alias_domains(tx: Tx) -> list[Row]:
    return tx.all(
        "SELECT alias_domain, target_domain, active FROM alias_domain ORDER BY alias_domain"
    )


def vacations(tx: Tx) -> list[Row]:
    return tx.all(
        "SELECT email, subject, body, activefrom, activeuntil, interval_time, domain, active"
        " FROM vacation ORDER BY email"
    )
