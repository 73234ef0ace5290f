"""Aliases, and the routing walk that keeps aliases and forwards free of loops.

Rows: one per (source, destination). A source is ``x@domain`` or ``@domain`` (catch-all,
``local_part`` empty); a destination is an address or ``discard`` (the discard sink; the
``postfix_virtual_alias`` view maps it to Postfix's ``discard:`` transport). Precedence
is the views' business: a mailbox maps to itself first, so a catch-all never swallows it.

Rules ``add`` enforces (callers pass the source's local domain from
``domains.require_local``): the source is not a mailbox; the domain's ``max_aliases``
counting distinct sources (0 = unlimited); every destination in a domain we host exists
(``check_destination``); and no loop (``find_loop``).

Routing walk: from an address, ``next_hops`` follows what Postfix would: a mailbox to its
forwards (a mailbox itself is a leaf), an exact alias to its destinations, ``x+ext@d`` to
``x@d``, an unknown address of a local domain to its catch-all ``@d``, ``x@alias`` to
``x@target``; external and relay addresses and ``discard`` are leaves. Inactive rows are
followed too: switching a row back on must not create a loop nobody was warned about.
The new rows are written first, so the walk runs over the result inside the same
transaction and a refusal rolls everything back.

Who calls it: ``admin/alias.py``, ``store/forwards.py``.

Errors: ``Conflict`` when the source is a mailbox or the pair exists; ``UsageError`` for
a loop (the message shows the path), a missing local destination, the alias limit;
``NotFound`` when removing what does not exist.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from mailwarden.errors import Conflict, NotFound, UsageError
from mailwarden.store import domains, lists
from mailwarden.store.db import Row, Tx

DISCARD = "discard"
_MAX_WALK = 10000  # nodes; far beyond Postfix's virtual_alias_expansion_limit (1000)


def destinations(tx: Tx, source: str) -> list[str]:
    rows = tx.all("SELECT destination FROM aliases WHERE source = ? ORDER BY id", (source,))
    return [r["destination"] for r in rows]


def source_exists(tx: Tx, source: str) -> bool:
    return tx.scalar("SELECT 1 FROM aliases WHERE source = ?", (source,)) is not None


def is_active(tx: Tx, source: str) -> bool:
    """True when any row of ``source`` is active (an alias is switched off as a whole)."""
    return bool(tx.scalar("SELECT MAX(active) FROM aliases WHERE source = ?", (source,)))


def sources_to(tx: Tx, destination: str) -> list[str]:
    """Alias sources that deliver to ``destination``."""
    rows = tx.all(
        "SELECT DISTINCT source FROM aliases WHERE destination = ? ORDER BY source",
        (destination,),
    )
    return [r["source"] for r in rows]


def count_sources(tx: Tx, domain_id: int) -> int:
    value = tx.scalar(
        "SELECT COUNT(DISTINCT source) FROM aliases WHERE domain_id = ?", (domain_id,)
    )
    return int(value or 0)


def add(
    tx: Tx,
    domain: domains.Domain,
    local_part: str,
    targets: Sequence[str],
    *,
    delimiter: str = "+",
) -> str:
    """Add ``local_part@domain`` (``""`` = catch-all) -> each target; return the source."""
    source = f"{local_part}@{domain.name}"
    domains.lock(tx, domain.id)
    if local_part and tx.scalar("SELECT 1 FROM mailboxes WHERE address = ?", (source,)):
        raise Conflict(f"{source} is a mailbox; use 'forward set' to send its mail elsewhere")
    if local_part:
        lists.refuse_list(tx, source)
    _check_limit(tx, domain, source)
    now = int(time.time())
    for target in targets:
        tx.insert(
            "INSERT INTO aliases (domain_id, local_part, source, destination, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (domain.id, local_part, source, target, now),
            conflict=f"alias {source} -> {target} already exists",
        )
    for target in targets:
        check_destination(tx, target, delimiter=delimiter)
    refuse_loop(tx, source, delimiter=delimiter)
    return source


def _check_limit(tx: Tx, domain: domains.Domain, source: str) -> None:
    if not domain.max_aliases or source_exists(tx, source):
        return
    if count_sources(tx, domain.id) >= domain.max_aliases:
        raise UsageError(
            f"domain {domain.name} has reached its limit of {domain.max_aliases} "
            + ("alias" if domain.max_aliases == 1 else "aliases")
        )


def remove(tx: Tx, source: str, targets: Sequence[str] = ()) -> int:
    """Remove the given destinations of ``source`` (all when none given); return the count."""
    if not targets:
        removed = tx.execute("DELETE FROM aliases WHERE source = ?", (source,))
        if not removed:
            raise NotFound(f"unknown alias {source!r}")
        return removed
    removed = 0
    for target in targets:
        n = tx.execute("DELETE FROM aliases WHERE source = ? AND destination = ?", (source, target))
        if not n:
            raise NotFound(f"alias {source} -> {target} does not exist")
        removed += n
    return removed


def list_grouped(tx: Tx, domain_id: int | None = None) -> list[Row]:
    """One row per source: ``source``, ``destinations`` (list), ``active``."""
    where, params = ("WHERE a.domain_id = ?", (domain_id,)) if domain_id is not None else ("", ())
    rows = tx.all(
        "SELECT a.source, a.destination, a.active FROM aliases a"
        f" JOIN domains d ON d.id = a.domain_id {where}"
        " ORDER BY d.name, a.local_part, a.id",
        params,
    )
    grouped: dict[str, Row] = {}
    for r in rows:
        entry = grouped.setdefault(
            r["source"], {"source": r["source"], "destinations": [], "active": False}
        )
        entry["destinations"].append(r["destination"])
        entry["active"] = entry["active"] or bool(r["active"])
    return list(grouped.values())


# --- destinations and loops -------------------------------------------------------------


def check_destination(tx: Tx, target: str, *, delimiter: str = "+") -> None:
    """Refuse a destination in a domain we host (local or alias) that does not exist."""
    if target == DISCARD:
        return
    local, _, name = target.rpartition("@")
    domain = domains.covering(tx, name)  # exact, else the wildcard that hosts it
    if domain is None or domain.kind == "relay":
        return  # someone else's address: fine
    address = f"{local}@{domain.alias_of}" if domain.kind == "alias" else target
    if _known(tx, address) or _known(tx, _strip(address, delimiter)):
        return
    raise UsageError(f"destination {target} does not exist")


def _known(tx: Tx, address: str) -> bool:
    return bool(
        tx.scalar("SELECT 1 FROM mailboxes WHERE address = ?", (address,))
        or tx.scalar("SELECT 1 FROM aliases WHERE source = ?", (address,))
        or lists.is_list(tx, address)
    )


def _strip(address: str, delimiter: str) -> str:
    """``x+ext@d`` -> ``x@d`` (Postfix recipient_delimiter rules), else unchanged."""
    local, _, domain = address.rpartition("@")
    cut = next((i for i, ch in enumerate(local) if ch in delimiter), -1) if delimiter else -1
    return address if cut <= 0 else f"{local[:cut]}@{domain}"


def refuse_loop(tx: Tx, start: str, *, delimiter: str = "+") -> None:
    path = find_loop(tx, start, delimiter=delimiter)
    if path:
        raise UsageError(f"mail loop: {' -> '.join(path)}")


def find_loop(tx: Tx, start: str, *, delimiter: str = "+") -> list[str] | None:
    """The shortest path by which mail for ``start`` comes back to it, or None."""
    parent: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    while queue and len(seen) < _MAX_WALK:
        node = queue.popleft()
        for hop in next_hops(tx, node, delimiter=delimiter):
            if hop == start:
                return [*_path(parent, node, start), start]
            if hop not in seen:
                seen.add(hop)
                parent[hop] = node
                queue.append(hop)
    return None


def _path(parent: dict[str, str], node: str, start: str) -> list[str]:
    path = [node]
    while node != start:
        node = parent[node]
        path.append(node)
    return path[::-1]


def next_hops(tx: Tx, node: str, *, delimiter: str = "+") -> list[str]:
    """Where mail for ``node`` (an address or ``@domain``) goes next; [] for a leaf."""
    if node == DISCARD:
        return []
    local, _, name = node.rpartition("@")
    domain = domains.covering(tx, name)
    if domain is None or domain.kind == "relay":
        return []
    if domain.kind == "alias":
        return [f"{local}@{domain.alias_of}"]
    if not local:
        return destinations(tx, node)
    mailbox_id = tx.scalar("SELECT id FROM mailboxes WHERE address = ?", (node,))
    if mailbox_id is not None:
        rows = tx.all("SELECT destination FROM forwards WHERE mailbox_id = ?", (mailbox_id,))
        return [r["destination"] for r in rows]
    exact = destinations(tx, node)
    if exact:
        return exact
    stripped = _strip(node, delimiter)
    if stripped != node:
        return [stripped]
    return [f"@{name}"] if source_exists(tx, f"@{name}") else []
