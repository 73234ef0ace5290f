"""Printing for the admin CLI: aligned tables for people, ``--json`` for scripts.

Who calls it: every command. Values are printed as given; ``None`` shows as ``-`` in
tables and ``null`` in JSON; times are already ISO 8601 UTC strings (``units.format_iso``)
when they get here. Nothing here touches the database.

What a command that changes something prints (``done``): one line for people; with
``--json`` one object ``{"ok": true, "message": <that line>, ...facts}``, where the facts
name what was changed (``domain``, ``address`` ...), carry what a script cannot get
otherwise (a generated ``password``) and any ``warnings`` or ``notes`` the line for
people would have been followed by.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO


def emit_json(data: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    json.dump(data, stream, indent=2, sort_keys=False, default=str)
    stream.write("\n")


def done(json_mode: bool, message: str, out: TextIO | None = None, **facts: Any) -> None:
    """The confirmation of a change (see the module doc); ``facts`` left None are dropped."""
    stream = out or sys.stdout
    if json_mode:
        kept = {k: v for k, v in facts.items() if v is not None and v != []}
        emit_json({"ok": True, "message": message, **kept}, stream)
        return
    stream.write(message + "\n")
    for note in facts.get("notes") or ():
        stream.write(f"note: {note}\n")


def emit_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], out: TextIO | None = None
) -> None:
    """Print rows as an aligned table with a header line; nothing but the header if empty."""
    stream = out or sys.stdout
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    stream.write(
        "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
    )
    stream.write("\n")
    for r in cells:
        stream.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")


def emit_record(record: Mapping[str, Any], out: TextIO | None = None) -> None:
    """Print one object as ``key: value`` lines."""
    stream = out or sys.stdout
    width = max((len(k) for k in record), default=0)
    for key, value in record.items():
        stream.write(f"{key.ljust(width)}  {_cell(value)}\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    return str(value).replace("\n", " ")
