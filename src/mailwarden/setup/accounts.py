"""Database steps of setup: schema, domains, the postmaster mailbox and aliases.

``plan`` reads what exists and returns the missing steps as ``mailwarden`` CLI argv
(the same commands an admin would type, run in-process by ``apply``), so setup adds
exactly what ``domain add``/``user add``/``alias add`` would and never changes or
removes an existing row.
"""

from __future__ import annotations

import grp
import os
from dataclasses import dataclass

from mailwarden.config import Settings
from mailwarden.errors import MailwardenError
from mailwarden.setup.answers import Answers
from mailwarden.store import aliases, domains, mailboxes, migrate
from mailwarden.store.db import Database, Tx, parse_url
from mailwarden.store.db import share_sqlite as db_share_sqlite


@dataclass(frozen=True)
class Step:
    describe: str
    argv: list[str]
    subject: str = ""


def plan(a: Answers, settings: Settings) -> list[Step]:
    url = a.database_url
    parsed = parse_url(url)
    if parsed.dialect == "sqlite" and not os.path.exists(parsed.path):
        return _steps_for_empty(a)
    db = Database(url, connect_timeout=settings.database.connect_timeout)
    try:
        st = migrate.status(db)
        if st.current == 0:
            return _steps_for_empty(a)
        steps = []
        if st.pending:
            steps.append(Step(f"upgrade schema {st.current} -> {st.latest}", ["db", "upgrade"]))
        # Domains, mailboxes and aliases exist since schema 1: what is there already is
        # never added twice, also when an upgrade is pending.
        with db.read() as tx:
            return steps + _accounts(a, tx)
    except MailwardenError:
        raise
    finally:
        db.close()


def hosted_domains(a: Answers, settings: Settings) -> list[str]:
    """The domains setup adds and every domain the database already has (any kind)."""
    names = list(a.domains)
    parsed = parse_url(a.database_url)
    if parsed.dialect == "sqlite" and not os.path.exists(parsed.path):
        return names
    db = Database(a.database_url, connect_timeout=settings.database.connect_timeout)
    try:
        if migrate.status(db).current == 0:
            return names
        with db.read() as tx:
            names += [str(r["name"]) for r in domains.list_all(tx)]
    finally:
        db.close()
    return list(dict.fromkeys(names))


def _steps_for_empty(a: Answers) -> list[Step]:
    return [Step("create schema", ["db", "init"]), *_accounts(a, None)]


def _accounts(a: Answers, tx: Tx | None) -> list[Step]:
    """Missing domains, postmaster mailbox, postmaster@ aliases (tx None: nothing exists)."""
    steps = []
    for name in a.domains:
        if tx is None or domains.get(tx, name) is None:
            steps.append(Step(f"add domain {name}", ["domain", "add", name]))
    if not a.postmaster:
        return steps
    if tx is None or not mailboxes.exists(tx, a.postmaster):
        steps.append(
            Step(f"add mailbox {a.postmaster}", ["user", "add", a.postmaster], a.postmaster)
        )
    for name in a.domains:
        source = f"postmaster@{name}"
        if source == a.postmaster:
            continue
        if tx is None or not (mailboxes.exists(tx, source) or aliases.source_exists(tx, source)):
            steps.append(
                Step(
                    f"add alias {source} -> {a.postmaster}", ["alias", "add", source, a.postmaster]
                )
            )
    return steps


def share_sqlite(url: str, group: str = "postfix") -> None:
    """Switch the SQLite database to WAL mode and let Postfix read it, nobody else but root.

    Postfix daemons run with their primary group only (``set_ugid``), so the group is
    ``postfix`` itself: directory ``root:postfix 2770``, database and its ``-wal``/``-shm``
    ``root:postfix 0660`` (``store.db.share_sqlite`` says why a WAL reader needs that).
    Dovecot's auth-worker (and, for quota_clone, its dict service as configured by
    contrib) and the mailwarden daemons run as root. The pipe LDA running as the mail user
    cannot open it and hands the message to lmtpd (or answers 75: the mail waits).
    """
    parsed = parse_url(url)
    if parsed.dialect != "sqlite" or not os.path.exists(parsed.path):
        return
    db_share_sqlite(parsed.path, grp.getgrnam(group).gr_gid)


def sharing_needed(url: str, group: str = "postfix") -> bool:
    """An existing SQLite database not yet as ``share_sqlite`` leaves it (owner, group,
    modes, WAL): an install made before WAL re-running setup is switched, and
    ``--dry-run`` says so."""
    import sqlite3
    import stat

    from mailwarden.store.db import SHARED_DIR_MODE, SHARED_FILE_MODE

    parsed = parse_url(url)
    if parsed.dialect != "sqlite" or not os.path.exists(parsed.path):
        return False
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False
    for path, mode in (
        (os.path.dirname(parsed.path) or "/", SHARED_DIR_MODE),
        (parsed.path, SHARED_FILE_MODE),
    ):
        st = os.stat(path)
        if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (0, gid, mode):
            return True
    conn = sqlite3.connect(f"file:{parsed.path}?mode=ro", uri=True, timeout=10)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal"
    except sqlite3.Error:
        return True
    finally:
        conn.close()
