"""Context: what every admin command handler receives besides its arguments.

Built once in ``cli.main`` from the loaded ``Settings``; it opens the database lazily so
commands that do not need it (``--help``, config checks) never connect. ``db()`` also
refuses to work on a database whose schema is missing or out of date. ``ops`` and
``actor`` are what the ``mailwarden.ops`` functions the handlers call take.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from mailwarden.admin import output
from mailwarden.config import Settings
from mailwarden.ops.base import Actor, Env
from mailwarden.store import migrate
from mailwarden.store.db import Database


@dataclass
class Context:
    settings: Settings
    json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    _db: Database | None = None

    def database(self, *, create: bool = False) -> Database:
        """The configured database, without any schema check (for ``db`` commands)."""
        if self._db is None:
            self._db = Database(
                self.settings.database.url,
                connect_timeout=self.settings.database.connect_timeout,
                create=create,
            )
        return self._db

    def db(self) -> Database:
        """The configured database, checked to hold the current schema."""
        db = self.database()
        migrate.require_current(db)
        return db

    @property
    def ops(self) -> Env:
        """What ``mailwarden.ops`` functions work with (the database checked current)."""
        return Env(self.db(), self.settings.mail, self.settings.api.provision)

    @property
    def actor(self) -> Actor:
        """The CLI's caller for the audit trail: an admin, ``cli:USER@HOST``."""
        return Actor.cli()

    def show(self, record: dict[str, Any]) -> None:
        if self.json:
            output.emit_json(record, self.out)
        else:
            output.emit_record(record, self.out)

    def table(self, rows: list[dict[str, Any]], columns: list[str]) -> None:
        if self.json:
            output.emit_json(rows, self.out)
        else:
            output.emit_table(rows, columns, self.out)

    def done(self, message: str, **facts: Any) -> None:
        """Confirm a change: the line for people, or ``{"ok": true, ...}`` with --json."""
        output.done(self.json, message, self.out, **facts)

    def say(self, text: str) -> None:
        """A one-line confirmation for people (suppressed with --json)."""
        if not self.json:
            self.out.write(text + "\n")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
