"""Send-as grants: extra sender addresses a login may use (table ``sendas_grants``).

Who calls it: ``mailwarden sendas`` and, through the ``postfix_sender_login`` view
(``smtpd_sender_login_maps``), Postfix; the policy daemon uses ``granted``.

A login may always send as itself, its aliases and its address in alias domains (the
view covers those); a grant adds one address or a whole domain (``@example.com``).
``address`` holds the normalised form from ``address.parse_source``.

Errors: ``Conflict`` for a grant that exists, ``NotFound`` for revoking one that does not.
"""

from __future__ import annotations

from typing import Any

from mailwarden.errors import NotFound
from mailwarden.store.db import Tx


def grant(tx: Tx, mailbox_id: int, login: str, address: str) -> None:
    tx.insert(
        "INSERT INTO sendas_grants (mailbox_id, address) VALUES (?, ?)",
        (mailbox_id, address),
        conflict=f"{login} may already send as {address}",
    )


def revoke(tx: Tx, mailbox_id: int, login: str, address: str) -> None:
    changed = tx.execute(
        "DELETE FROM sendas_grants WHERE mailbox_id = ? AND address = ?", (mailbox_id, address)
    )
    if not changed:
        raise NotFound(f"{login} has no send-as grant for {address}")


def list_grants(tx: Tx, mailbox_id: int | None = None) -> list[dict[str, Any]]:
    """Rows ``{login, address}`` ordered by login and address; one login or all."""
    sql = (
        "SELECT m.address AS login, g.address AS address FROM sendas_grants g "
        "JOIN mailboxes m ON m.id = g.mailbox_id"
    )
    if mailbox_id is None:
        return tx.all(sql + " ORDER BY m.address, g.address")
    return tx.all(sql + " WHERE g.mailbox_id = ? ORDER BY g.address", (mailbox_id,))


def granted(tx: Tx, login: str, sender: str) -> bool:
    """True if ``login`` holds a grant for ``sender`` (normalised) or its ``@domain``."""
    domain = "@" + sender.rsplit("@", 1)[-1]
    return bool(
        tx.scalar(
            "SELECT COUNT(*) FROM sendas_grants g JOIN mailboxes m ON m.id = g.mailbox_id "
            "WHERE m.address = ? AND g.address IN (?, ?)",
            (login, sender, domain),
        )
    )
