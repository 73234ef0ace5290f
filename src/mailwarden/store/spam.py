"""Spam settings and allow/block lists (tables ``spam_settings`` and ``access_lists``).

Who calls it: ``mailwarden spam`` (set, show, allow, block, unlist, lists); the delivery
agent (``layers_for``: what to do with a scored message), the policy daemon and the
milter (``access_lists``), through ``store.sql.SqlStore`` where they have one. What the
layers and lists mean is decided in ``core.spamsettings`` (``Layers.effective``,
``access_decision``); this module only reads and writes rows.

Both tables are keyed by ``scope``: ``global``, a local domain name or a mailbox
address (see ``store.scopes``); rows of a domain or mailbox carry its id so they go with
it. A NULL ``action`` or ``threshold`` means "inherit from the layer above"; the
``global`` row (seeded by the schema) always has both.

Errors: ``UsageError`` for clearing a global setting or for setting nothing;
``NotFound`` for unlisting a pattern that is not listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailwarden.core.spamsettings import AccessLists, Effective, Layer, Layers
from mailwarden.errors import NotFound, UsageError
from mailwarden.store.db import Tx
from mailwarden.store.scopes import GLOBAL, Scope

SETTINGS = ("action", "threshold", "enforce")


# --- settings --------------------------------------------------------------------------


def get_layer(tx: Tx, scope: str) -> Layer | None:
    """The row of one scope, or None if it has none."""
    row = tx.one("SELECT action, threshold, enforce FROM spam_settings WHERE scope = ?", (scope,))
    return None if row is None else _layer(row)


def set_settings(tx: Tx, scope: Scope, changes: Mapping[str, Any]) -> Layer:
    """Upsert the row of ``scope``: keys of ``changes`` (action, threshold, enforce) are set,
    others keep their value (a new row inherits them). A None action/threshold = inherit."""
    unknown = set(changes) - set(SETTINGS)
    if unknown or not changes:
        raise UsageError("nothing to set: give --action, --threshold or --enforce/--no-enforce")
    if scope.kind == "global" and any(changes.get(k, 0) is None for k in ("action", "threshold")):
        raise UsageError("the global spam settings cannot inherit: give a value")
    values = {k: (int(bool(v)) if k == "enforce" else v) for k, v in changes.items()}
    columns = [k for k in SETTINGS if k in values]  # fixed identifiers, never user text
    params = [values[k] for k in columns]
    if tx.one("SELECT id FROM spam_settings WHERE scope = ?", (scope.name,)) is not None:
        assignments = ", ".join(f"{c} = ?" for c in columns)
        tx.execute(f"UPDATE spam_settings SET {assignments} WHERE scope = ?", (*params, scope.name))
    else:
        names = ", ".join(["scope", "domain_id", "mailbox_id", *columns])
        marks = ", ".join("?" * (3 + len(columns)))
        tx.insert(
            f"INSERT INTO spam_settings ({names}) VALUES ({marks})",
            (scope.name, scope.domain_id, scope.mailbox_id, *params),
            conflict=f"spam settings for {scope.name!r} changed concurrently; try again",
        )
    layer = get_layer(tx, scope.name)
    assert layer is not None
    return layer


def layers_for_scope(tx: Tx, scope: Scope) -> Layers:
    """The layers above and including ``scope`` (global; domain; mailbox)."""
    if scope.kind == "global":
        return Layers(get_layer(tx, GLOBAL) or Layer())
    return layers_for(tx, scope.name)


def layers_for(tx: Tx, recipient: str) -> Layers:
    """The global, domain and mailbox rows for a recipient (see ``_layer_scopes``)."""
    domain, mailbox = _layer_scopes(recipient)
    rows = _rows_by_scope(tx, (GLOBAL, domain, mailbox))
    return Layers(rows.get(GLOBAL, Layer()), rows.get(domain), rows.get(mailbox))


def effective_for(tx: Tx, mailbox_address: str) -> Effective:
    """The spam treatment for mail to ``mailbox_address`` (``Layers.effective``)."""
    return layers_for(tx, mailbox_address).effective()


def _rows_by_scope(tx: Tx, names: tuple[str, ...]) -> dict[str, Layer]:
    marks = ", ".join("?" * len(names))
    rows = tx.all(
        f"SELECT scope, action, threshold, enforce FROM spam_settings WHERE scope IN ({marks})",
        names,
    )
    return {str(r["scope"]).lower(): _layer(r) for r in rows}


def _layer(row: dict[str, Any]) -> Layer:
    threshold = row["threshold"]
    return Layer(
        None if row["action"] is None else str(row["action"]).lower(),
        None if threshold is None else float(threshold),
        bool(row["enforce"]),
    )


# --- allow/block lists -----------------------------------------------------------------


def list_entry(tx: Tx, scope: Scope, kind: str, pattern: str, now: int) -> str | None:
    """Put ``pattern`` on the ``kind`` list of ``scope``; return the kind it had before
    (None if new). A pattern is on one list per scope, so allow->block moves it."""
    row = tx.one(
        "SELECT kind FROM access_lists WHERE scope = ? AND pattern = ?", (scope.name, pattern)
    )
    if row is not None:
        tx.execute(
            "UPDATE access_lists SET kind = ?, created_at = ? WHERE scope = ? AND pattern = ?",
            (kind, now, scope.name, pattern),
        )
        return str(row["kind"])
    tx.insert(
        "INSERT INTO access_lists (scope, domain_id, mailbox_id, kind, pattern, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (scope.name, scope.domain_id, scope.mailbox_id, kind, pattern, now),
        conflict=f"{pattern!r} was listed for {scope.name!r} concurrently; try again",
    )
    return None


def unlist(tx: Tx, scope: str, pattern: str) -> None:
    if not tx.execute("DELETE FROM access_lists WHERE scope = ? AND pattern = ?", (scope, pattern)):
        raise NotFound(f"{pattern!r} is on no list of {scope!r}")


def entries(tx: Tx, scope: str) -> list[dict[str, Any]]:
    """Rows ``{kind, pattern, created_at}`` of one scope, allow first, then by pattern."""
    return tx.all(
        "SELECT kind, pattern, created_at FROM access_lists WHERE scope = ? ORDER BY kind, pattern",
        (scope,),
    )


def lists_for(tx: Tx, recipient: str) -> list[tuple[str, str, str]]:
    """``(layer, kind, pattern)`` for a recipient: global, its domain, its mailbox (see
    ``_layer_scopes``)."""
    domain, mailbox = _layer_scopes(recipient)
    rows = tx.all(
        "SELECT scope, kind, pattern FROM access_lists WHERE scope IN (?, ?, ?) "
        "ORDER BY scope, pattern",
        (GLOBAL, domain, mailbox),
    )
    names = {GLOBAL: "global", domain: "domain", mailbox: "mailbox"}
    return [(names[str(r["scope"]).lower()], str(r["kind"]), str(r["pattern"])) for r in rows]


def _layer_scopes(recipient: str) -> tuple[str, str]:
    """(domain scope, mailbox scope) of a recipient. ``recipient`` is a mailbox address,
    or a bare domain name for one that has no mailbox (an alias or catch-all address):
    then the mailbox scope is ``""``, which no row has, so only global and domain apply."""
    value = recipient.lower()
    if "@" not in value:
        return value, ""
    return value.rsplit("@", 1)[1], value


def access_lists(tx: Tx, recipient: str) -> AccessLists:
    """The list entries and enforced layers for a recipient (``core.spamsettings.
    access_decision`` decides with them)."""
    return AccessLists(tuple(lists_for(tx, recipient)), layers_for(tx, recipient).enforced)
