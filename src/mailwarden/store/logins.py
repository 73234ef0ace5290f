"""Mailbox logins for the REST API's ``/me`` and the DAV server: the stored password hash
of one mailbox, whether it may log in, and its services bitfield.

The only reader of the password column besides Dovecot's views; the hash never leaves
``api.auth`` or ``ops.logins`` (it is compared with ``passwords.verify_password`` and
dropped).

Who calls it: ``api.auth``, ``ops.logins`` (the Radicale plugin in contrib/radicale).
Errors: whatever ``store.db`` raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.store.db import Tx


@dataclass(frozen=True, slots=True)
class Login:
    address: str
    password_hash: str
    active: bool  # the mailbox and its domain are both active
    services: int = 7  # 1 mail, 2 calendar, 4 contacts (store.mailboxes.SERVICES)
    provisioned: bool = True  # logged in before (mailboxes.provisioned_at, schema 0010)


def get(tx: Tx, address: str) -> Login | None:
    row = tx.one(
        "SELECT m.address, m.password, m.active AS m_active, d.active AS d_active, m.services,"
        " m.provisioned_at"
        " FROM mailboxes m JOIN domains d ON d.id = m.domain_id WHERE m.address = ?",
        (address,),
    )
    if row is None:
        return None
    active = bool(row["m_active"]) and bool(row["d_active"])
    return Login(
        row["address"],
        row["password"],
        active,
        int(row["services"]),
        row["provisioned_at"] is not None,
    )
