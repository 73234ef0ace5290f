"""The schema is one data model in two dialects, and migrations are path-independent.

- MariaDB and SQLite end up with the same tables, views and columns (in order).
- Upgrading from every earlier schema version gives exactly what a fresh init gives.
- The database enforces uniqueness, foreign keys and checks, not only Python.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from mailwarden.errors import Conflict
from mailwarden.store import migrate
from mailwarden.store.db import Database

pytestmark = pytest.mark.integration


def _shape(db: Database) -> dict[str, Any]:
    """Tables and views with their ordered column names."""
    with db.read() as tx:
        if db.dialect == "sqlite":
            objs = tx.all(
                "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
            shape = {}
            for o in objs:
                cols = [r["name"] for r in tx.all(f"PRAGMA table_info({o['name']})")]
                shape[o["name"]] = (o["type"], cols)
            return shape
        objs = tx.all(
            "SELECT table_name AS name, table_type AS type FROM information_schema.tables "
            "WHERE table_schema = DATABASE() ORDER BY table_name"
        )
        shape = {}
        for o in objs:
            cols = tx.all(
                "SELECT column_name AS name FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
                (o["name"],),
            )
            kind = "view" if o["type"] == "VIEW" else "table"
            shape[o["name"]] = (kind, [c["name"] for c in cols])
        return shape


def _definition(db: Database) -> list[str]:
    """The full DDL as the server reports it (for path-independence)."""
    with db.read() as tx:
        if db.dialect == "sqlite":
            rows = tx.all(
                "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                "AND name <> 'schema_version' ORDER BY type, name"
            )
            return [f"{r['type']} {r['name']}: {r['sql']}" for r in rows]
        out = []
        for name in sorted(_shape(db)):
            if name == "schema_version":
                continue
            row = tx.all(f"SHOW CREATE TABLE `{name}`")[0]
            ddl = row.get("Create Table") or row.get("Create View") or ""
            ddl = re.sub(r" AUTO_INCREMENT=\d+", "", str(ddl))
            out.append(re.sub(r"DEFINER=`[^`]*`@`[^`]*` ", "", ddl))
        # SHOW CREATE TABLE leaves out the table's triggers (sqlite_master lists them).
        triggers = tx.all(
            "SELECT trigger_name AS name FROM information_schema.triggers "
            "WHERE trigger_schema = DATABASE() ORDER BY trigger_name"
        )
        for t in triggers:
            row = tx.all(f"SHOW CREATE TRIGGER `{t['name']}`")[0]
            ddl = str(row.get("SQL Original Statement") or "")
            out.append(re.sub(r"DEFINER=`[^`]*`@`[^`]*` ", "", ddl))
        return out


def _fresh(url_factory: Any) -> Database:
    return Database(url_factory(), create=True)


@pytest.fixture
def url_factory(request: pytest.FixtureRequest, workdir: Any, db_url: str) -> Any:
    """Returns new empty database URLs of the same dialect as db_url."""
    from tests import conftest

    if db_url.startswith("sqlite"):
        return lambda: conftest._sqlite_url(workdir)
    server = request.getfixturevalue("mariadb")
    return lambda: conftest._mysql_url(server)


def test_dialects_have_the_same_tables_and_columns(workdir: Any, mariadb: Any) -> None:
    from tests import conftest

    lite = Database(conftest._sqlite_url(workdir), create=True)
    my = Database(conftest._mysql_url(mariadb))
    migrate.init(lite)
    migrate.init(my)
    a, b = _shape(lite), _shape(my)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name
    assert {"domains", "mailboxes", "aliases", "dovecot_users", "postfix_virtual_alias"} <= set(a)
    assert {"dovecot_quota", "dovecot_last_login"} <= set(a)


def _triggers(db: Database) -> list[tuple[str, str, str]]:
    """(name, table, event) of every trigger."""
    with db.read() as tx:
        if db.dialect == "sqlite":
            rows = tx.all(
                "SELECT name, tbl_name AS tbl, sql FROM sqlite_master WHERE type = 'trigger'"
            )
            return sorted(
                (r["name"], r["tbl"], "INSERT" if " INSERT ON " in r["sql"] else "UPDATE")
                for r in rows
            )
        rows = tx.all(
            "SELECT trigger_name AS name, event_object_table AS tbl, event_manipulation AS ev "
            "FROM information_schema.triggers WHERE trigger_schema = DATABASE()"
        )
        return sorted((r["name"], r["tbl"], r["ev"]) for r in rows)


def test_dialects_have_the_same_triggers(workdir: Any, mariadb: Any) -> None:
    from tests import conftest

    lite = Database(conftest._sqlite_url(workdir), create=True)
    my = Database(conftest._mysql_url(mariadb))
    migrate.init(lite)
    migrate.init(my)
    assert (
        _triggers(lite)
        == _triggers(my)
        == [
            ("dovecot_last_login_after_insert", "dovecot_last_login", "INSERT"),
            ("dovecot_last_login_after_update", "dovecot_last_login", "UPDATE"),
            ("dovecot_quota_after_insert", "dovecot_quota", "INSERT"),
            ("dovecot_quota_after_update", "dovecot_quota", "UPDATE"),
        ]
    )


def test_both_dialects_ship_the_same_migrations() -> None:
    lite = [(m.version, m.name) for m in migrate.available("sqlite")]
    my = [(m.version, m.name) for m in migrate.available("mysql")]
    assert lite == my
    assert [v for v, _ in lite] == list(range(1, len(lite) + 1))


def test_upgrade_from_every_version_equals_fresh_init(url_factory: Any) -> None:
    fresh = _fresh(url_factory)
    migrate.init(fresh)
    expected = _definition(fresh)
    latest = migrate.status(fresh).latest
    for start in range(0, latest):
        db = _fresh(url_factory)
        migrate.upgrade(db, target=start)
        assert migrate.current_version(db) == start
        applied = migrate.upgrade(db)
        assert [m.version for m in applied] == list(range(start + 1, latest + 1))
        assert _definition(db) == expected, f"upgrade from {start} differs"
        assert migrate.status(db).pending == ()


def test_database_enforces_constraints(url_factory: Any) -> None:
    db = _fresh(url_factory)
    migrate.init(db)
    with db.transaction() as tx:
        tx.execute("INSERT INTO domains (name, kind) VALUES ('a.test', 'local')")
    bad = [
        "INSERT INTO domains (name, kind) VALUES ('a.test', 'local')",  # unique name
        "INSERT INTO domains (name, kind) VALUES ('b.test', 'bogus')",  # kind check
        "INSERT INTO domains (name, kind) VALUES ('c.test', 'alias')",  # alias needs alias_of
        "INSERT INTO mailboxes (domain_id, local_part, address, password, maildir) "
        "VALUES (999, 'x', 'x@nowhere.test', 'p', 'nowhere.test/x/')",  # foreign key
        "INSERT INTO spam_settings (scope, action) VALUES ('z', 'explode')",  # action check
        "INSERT INTO rate_limits (scope, period) VALUES ('a.test', 'week')",  # period check
    ]
    for stmt in bad:
        with pytest.raises(Conflict), db.transaction() as tx:
            tx.execute(stmt)
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM domains") == 1


def test_deleting_a_domain_cascades(url_factory: Any) -> None:
    db = _fresh(url_factory)
    migrate.init(db)
    with db.transaction() as tx:
        did = tx.insert("INSERT INTO domains (name, kind) VALUES ('a.test', 'local')")
        mid = tx.insert(
            "INSERT INTO mailboxes (domain_id, local_part, address, password, maildir) "
            "VALUES (?, 'x', 'x@a.test', 'p', 'a.test/x/')",
            (did,),
        )
        tx.execute("INSERT INTO forwards (mailbox_id, destination) VALUES (?, 'y@b.test')", (mid,))
        tx.execute("INSERT INTO quota_usage (mailbox_id, bytes) VALUES (?, 10)", (mid,))
    with db.transaction() as tx:
        tx.execute("DELETE FROM domains WHERE id = ?", (did,))
    with db.read() as tx:
        for table in ("mailboxes", "forwards", "quota_usage"):
            assert tx.scalar(f"SELECT COUNT(*) FROM {table}") == 0, table


def test_values_are_bound_never_executed(url_factory: Any) -> None:
    db = _fresh(url_factory)
    migrate.init(db)
    evil = "x'); DROP TABLE domains; -- ? %s %(a)s"
    with db.transaction() as tx:
        tx.execute("INSERT INTO relay_networks (network, note) VALUES (?, ?)", ("10.0.0.0/8", evil))
    with db.read() as tx:
        assert tx.scalar("SELECT note FROM relay_networks") == evil
        assert tx.scalar("SELECT COUNT(*) FROM domains") == 0
