"""Schema migrations: numbered SQL files per dialect, applied in order and recorded.

Who calls it: ``mailwarden db init|upgrade|status`` and the test suite.

Files: ``mailwarden/sql/<dialect>/NNNN_name.sql`` (package data). Each file is split into
statements on ``;`` at the end of a line; ``--`` comment lines are ignored. A file is
applied inside one transaction (SQLite rolls DDL back; MySQL commits DDL implicitly, so a
failed MySQL migration may leave part of a file applied — the error names the file) and
recorded in ``schema_version``.

Errors: ``UsageError`` for ``init`` on a database that is already initialised; any
``StoreError`` from the statements themselves.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources

from mailwarden.errors import StoreError, UsageError
from mailwarden.store.db import Database

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_VERSION_TABLE = {
    "mysql": "CREATE TABLE IF NOT EXISTS schema_version (version INT NOT NULL PRIMARY KEY, "
    "name VARCHAR(255) NOT NULL, applied_at BIGINT NOT NULL) "
    "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY, "
    "name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        chunks = re.split(r";[ \t]*(?:\n|$)", "\n".join(lines))
        return [c.strip() for c in chunks if c.strip()]


@dataclass(frozen=True, slots=True)
class Status:
    current: int
    latest: int
    pending: tuple[Migration, ...]


def available(dialect: str) -> list[Migration]:
    """All migrations shipped for a dialect, in order."""
    folder = resources.files("mailwarden") / "sql" / dialect
    found = []
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    return found


def current_version(db: Database) -> int:
    """The highest applied migration, 0 for an empty database."""
    with db.transaction() as tx:
        tx.execute(_VERSION_TABLE[db.dialect])
        value = tx.scalar("SELECT MAX(version) FROM schema_version")
    return int(value or 0)


def status(db: Database) -> Status:
    current = current_version(db)
    migrations = available(db.dialect)
    pending = tuple(m for m in migrations if m.version > current)
    return Status(current, migrations[-1].version if migrations else 0, pending)


def upgrade(db: Database, target: int | None = None) -> list[Migration]:
    """Apply pending migrations up to ``target`` (default: all); return what ran."""
    applied = []
    for mig in status(db).pending:
        if target is not None and mig.version > target:
            break
        try:
            with db.transaction() as tx:
                for stmt in mig.statements():
                    tx.execute(stmt)
                tx.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (mig.version, mig.name, int(time.time())),
                )
        except StoreError as exc:
            raise StoreError(f"migration {mig.version:04d}_{mig.name} failed: {exc}") from exc
        applied.append(mig)
    return applied


def init(db: Database) -> list[Migration]:
    """Create the schema in an empty database."""
    current = current_version(db)
    if current:
        raise UsageError(
            f"database {db.url.masked} is already initialised (schema version {current}); "
            "use 'mailwarden db upgrade'"
        )
    return upgrade(db)


def require_current(db: Database) -> None:
    """Refuse to work on a database whose schema is missing or older than this code."""
    st = status(db)
    if st.current == 0:
        raise UsageError(f"database {db.url.masked} has no schema; run 'mailwarden db init'")
    if st.pending:
        raise UsageError(
            f"database schema is at version {st.current}, this mailwarden needs {st.latest}; "
            "run 'mailwarden db upgrade'"
        )
