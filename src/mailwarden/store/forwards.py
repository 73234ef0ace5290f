"""Forwards: a mailbox sends its mail on to other addresses, optionally keeping a copy.

The ``postfix_virtual_alias`` view turns each forward into ``mailbox -> destination``
and keeps the ``mailbox -> mailbox`` row only when ``forward_keep_copy`` is set, so a
forward without a copy empties the mailbox's own delivery.

``replace`` swaps the whole set in one go. It refuses a mailbox forwarding to itself (that
is what keeping a copy means), a destination in a domain we host that does not exist,
and anything that leads back to the mailbox (the routing walk in ``store/aliases.py``).

Who calls it: ``admin/forward.py``, ``admin/user.py`` (to show forwards).

Errors: ``UsageError`` for a self-forward, a missing local destination, or a loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailwarden.errors import UsageError
from mailwarden.store import aliases, mailboxes
from mailwarden.store.db import Tx


def destinations(tx: Tx, mailbox_id: int) -> list[str]:
    rows = tx.all(
        "SELECT destination FROM forwards WHERE mailbox_id = ? ORDER BY id", (mailbox_id,)
    )
    return [r["destination"] for r in rows]


def replace(
    tx: Tx,
    mailbox: mailboxes.Mailbox,
    targets: Sequence[str],
    *,
    keep_copy: bool,
    delimiter: str = "+",
) -> None:
    """Make ``targets`` the forwards of ``mailbox`` (normalised addresses, no duplicates)."""
    if mailbox.address in targets:
        raise UsageError(
            f"{mailbox.address} cannot forward to itself; use --keep-copy to keep a copy"
        )
    clear(tx, mailbox.id)
    for target in targets:
        tx.insert(
            "INSERT INTO forwards (mailbox_id, destination) VALUES (?, ?)",
            (mailbox.id, target),
            conflict=f"forward {mailbox.address} -> {target} given twice",
        )
    mailboxes.set_keep_copy(tx, mailbox.id, keep_copy)
    for target in targets:
        aliases.check_destination(tx, target, delimiter=delimiter)
    aliases.refuse_loop(tx, mailbox.address, delimiter=delimiter)


def clear(tx: Tx, mailbox_id: int) -> int:
    """Remove every forward of a mailbox and its keep-copy flag; return how many there were."""
    removed = tx.execute("DELETE FROM forwards WHERE mailbox_id = ?", (mailbox_id,))
    mailboxes.set_keep_copy(tx, mailbox_id, False)
    return removed


def forwarders_to(tx: Tx, destination: str) -> list[str]:
    """Mailboxes that forward to ``destination``."""
    rows = tx.all(
        "SELECT m.address FROM forwards f JOIN mailboxes m ON m.id = f.mailbox_id"
        " WHERE f.destination = ? ORDER BY m.address",
        (destination,),
    )
    return [r["address"] for r in rows]
