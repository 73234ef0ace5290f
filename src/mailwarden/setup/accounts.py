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
    """Let Postfix read the SQLite database, and nobody else but root.

    The file holds password hashes: it is ``root:postfix`` mode 0640 in a ``root:postfix``
    0750 directory. Postfix daemons run with their primary group only (``set_ugid``), so
    its group must be ``postfix`` itself; Dovecot's auth-worker (and, for quota_clone,
    its dict service as configured by contrib) and the mailwarden daemons run as root.
    The pipe LDA running as the mail user cannot open it and answers 75 (the mail waits
    in the queue) unless it can hand the message to lmtpd, which is what it does.
    """
    parsed = parse_url(url)
    if parsed.dialect != "sqlite" or not os.path.exists(parsed.path):
        return
    gid = grp.getgrnam(group).gr_gid
    directory = os.path.dirname(parsed.path)
    for path, mode in ((directory, 0o750), (parsed.path, 0o640)):
        os.chown(path, 0, gid)
        os.chmod(path, mode)
