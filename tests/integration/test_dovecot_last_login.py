"""IMAP and POP3 logins reach mailboxes.last_login: Dovecot's last_login plugin and the
schema 0005 triggers.

contrib/dovecot/92-mailwarden-last-login.conf enables Dovecot's last_login plugin for
IMAP and POP3; it writes the login time (UNIX seconds) through the dict ``mailwarden``
of 91-mailwarden-quota-clone.conf (map in dovecot-dict-mailwarden.conf.ext.{mysql,sqlite})
into ``dovecot_last_login``, one row per (login, protocol), whose triggers copy it into
``mailboxes.last_login``, which ``mailwarden user show`` and ``user list --json`` print.

The triggers are tested alone with every statement form a dict-sql writer may use; the
end-to-end test runs a real Dovecot 2.3 with the contrib files on both dialects: an IMAP
login and a POP3 login each set ``last_login``; a failed login, an LMTP delivery through
Dovecot and ``doveadm auth test`` (what SMTP AUTH does) do not. With MariaDB, Dovecot's
dict account may write only ``dovecot_quota`` and ``dovecot_last_login``: the write into
``mailboxes`` runs with the triggers' definer rights, and the account itself is refused.
"""

from __future__ import annotations

import imaplib
import json
import secrets
import smtplib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from mailwarden import units
from mailwarden.errors import StoreError
from mailwarden.store.db import Database, parse_url
from tests.conftest import Cli
from tests.contrib import CONTRIB, DOVECOT_VIEWS, mail_settings, placeholders, reader_url, render
from tests.integration.test_contrib_dovecot import (
    IMAP,
    fresh_ip,
    imap_login,
    pop3_login,
    use_contrib_auth,
)
from tests.integration.test_dovecot_quota_clone import install_quota_clone, wait_for
from tests.servers import Dovecot, missing_requirements

pytestmark = pytest.mark.integration

USER = "alice@example.test"
PASSWORD = "Corr3ct horse"
PAST = 1_000_000_000  # 2001-09-09: a last_login no test run can produce


def last_login(db: Database, address: str = USER) -> int | None:
    with db.read() as tx:
        value = tx.scalar("SELECT last_login FROM mailboxes WHERE address = ?", (address,))
    return None if value is None else int(value)


def recorded(db: Database) -> dict[tuple[str, str], int]:
    """dovecot_last_login as {(username, service): last_login}."""
    with db.read() as tx:
        rows = tx.all("SELECT username, service, last_login FROM dovecot_last_login")
    return {(r["username"], r["service"]): int(r["last_login"]) for r in rows}


def set_last_login(db: Database, value: int | None) -> None:
    with db.transaction() as tx:
        tx.execute("UPDATE mailboxes SET last_login = ?", (value,))


# --- the triggers alone, with the statements a dict-sql writer may use -----------------


def test_triggers_copy_every_write_form(cli: Cli) -> None:
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    cli.ok("user", "add", "bob@example.test", "--password-stdin", stdin=PASSWORD + "\n")
    db = Database(cli.url)
    mysql = db.dialect == "mysql"
    try:
        assert last_login(db) is None  # never logged in
        with db.transaction() as tx:  # the dict's first write for a login: INSERT
            tx.execute(
                "INSERT INTO dovecot_last_login (last_login, service, username) "
                "VALUES (1700000000, 'imap', ?)",
                (USER,),
            )
        assert last_login(db) == 1700000000
        assert last_login(db, "bob@example.test") is None  # nobody else's

        upsert = (  # what Dovecot's dict-sql sends for MySQL / SQLite (ON CONFLICT DO)
            "INSERT INTO dovecot_last_login (last_login, service, username) "
            "VALUES (?, 'imap', ?) ON DUPLICATE KEY UPDATE last_login = ?"
            if mysql
            else "INSERT INTO dovecot_last_login (last_login, service, username) "
            "VALUES (?, 'imap', ?) ON CONFLICT (service, username) DO UPDATE SET last_login = ?"
        )
        replace = (
            "REPLACE INTO dovecot_last_login (last_login, service, username) VALUES (?, 'pop3', ?)"
            if mysql
            else "INSERT OR REPLACE INTO dovecot_last_login (last_login, service, username) "
            "VALUES (?, 'pop3', ?)"
        )
        for stmt, params, want in (
            (upsert, (1700000100, USER, 1700000100), 1700000100),
            (replace, (1700000200, USER), 1700000200),
            (replace, (1700000300, USER), 1700000300),
            (
                "UPDATE dovecot_last_login SET last_login = 1700000400 WHERE username = ?",
                (USER,),
                1700000400,
            ),
            # the latest write wins, also when the clock went back
            (upsert, (1600000000, USER, 1600000000), 1600000000),
        ):
            with db.transaction() as tx:
                tx.execute(stmt, params)
            assert last_login(db) == want, stmt

        with db.transaction() as tx:  # the login's case does not matter; strangers are kept
            tx.execute("DELETE FROM dovecot_last_login")
            tx.execute(
                "INSERT INTO dovecot_last_login (last_login, service, username) "
                "VALUES (1700000500, 'imap', ?)",
                (USER.upper(),),
            )
            tx.execute(
                "INSERT INTO dovecot_last_login (last_login, service, username) "
                "VALUES (1700000600, 'imap', 'nobody@example.test')"
            )
        assert last_login(db) == 1700000500
        assert len(recorded(db)) == 2
        with db.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM mailboxes WHERE last_login IS NOT NULL") == 1
    finally:
        db.close()


# --- end to end: a real Dovecot 2.3 with the contrib files -----------------------------


@dataclass
class Stack:
    cli: Cli
    db: Database
    dovecot: Dovecot
    dict_url: str


def dict_url(url: str, server: Any) -> str:
    """The URL Dovecot's dict writes with: for MySQL an account that may only write
    dovecot_quota and dovecot_last_login (contrib/README.md); SQLite comes back unchanged."""
    db = parse_url(url)
    if db.dialect != "mysql":
        return url
    user, password = f"{db.database}_dict"[:80], secrets.token_hex(12)
    stmts = []
    for host in ("127.0.0.1", "localhost"):
        account = f"'{user}'@'{host}'"
        stmts += [
            f"CREATE OR REPLACE USER {account} IDENTIFIED BY '{password}'",
            f"GRANT SELECT, INSERT, UPDATE ON `{db.database}`.`dovecot_quota` TO {account}",
            f"GRANT SELECT, INSERT, UPDATE ON `{db.database}`.`dovecot_last_login` TO {account}",
        ]
    server.execute(";\n".join(stmts) + ";")
    return f"mysql://{user}:{password}@{db.host}:{db.port}/{quote(db.database)}"


def install_last_login(dovecot: Dovecot, values: dict[str, str]) -> None:
    """91-... (the dict and its map) and 92-mailwarden-last-login.conf, as setup installs them."""
    install_quota_clone(dovecot, values)
    text = render((CONTRIB / "dovecot/92-mailwarden-last-login.conf").read_text(), values)
    with dovecot.conf_path.open("a") as conf:
        conf.write("\n# contrib/dovecot/92-mailwarden-last-login.conf\n" + text)


@pytest.fixture
def stack(cli: Cli, request: pytest.FixtureRequest, workdir: Path) -> Iterator[Stack]:
    if missing := missing_requirements(Dovecot):
        pytest.skip(f"Dovecot not usable: {', '.join(missing)}")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    cli.ok("user", "add", "bob@example.test", "--password-stdin", stdin=PASSWORD + "\n")
    server = request.getfixturevalue("mariadb") if cli.url.startswith("mysql:") else None
    root, uid, gid = mail_settings(cli.config_path)
    auth_values = placeholders(
        reader_url(cli.url, server, "dovecot", DOVECOT_VIEWS), mail_root=root, uid=uid, gid=gid
    )
    dialect = auth_values["@DB_DIALECT@"]
    sql_text = render(
        (CONTRIB / f"dovecot/dovecot-sql.conf.ext.{dialect}").read_text(), auth_values
    )
    quota_conf = render((CONTRIB / "dovecot/90-mailwarden-quota.conf").read_text(), auth_values)
    dovecot = Dovecot(workdir, sql_text, root, extra_conf=quota_conf)
    use_contrib_auth(dovecot, auth_values)
    writer = dict_url(cli.url, server)
    install_last_login(dovecot, placeholders(writer, mail_root=root, uid=uid, gid=gid))
    db = Database(cli.url)
    dovecot.start()
    try:
        yield Stack(cli, db, dovecot, writer)
    finally:
        dovecot.stop()
        db.close()


def wait_recorded(stack: Stack, service: str, since: int) -> int:
    """Wait until the dict wrote (USER, service) at or after ``since``; that time."""
    return int(
        wait_for(
            f"dovecot_last_login ({USER}, {service})",
            lambda: (t := recorded(stack.db).get((USER, service))) is not None and t >= since and t,
        )
    )


def test_imap_and_pop3_logins_set_last_login(stack: Stack) -> None:
    assert json.loads(stack.cli.ok("user", "show", USER, "--json"))["last_login"] is None

    start = int(time.time())
    assert imap_login(stack.dovecot, USER)
    when = wait_recorded(stack, "imap", start)
    assert when <= time.time() + 1
    assert last_login(stack.db) == when
    assert last_login(stack.db, "bob@example.test") is None

    # Shown by the CLI, JSON included, as every admin command shows a time (ISO 8601 UTC).
    shown = json.loads(stack.cli.ok("user", "show", USER, "--json"))["last_login"]
    assert shown == units.format_utc(when), shown
    listed = {r["address"]: r for r in json.loads(stack.cli.ok("user", "list", "--json"))}
    assert listed[USER]["last_login"] == shown
    assert listed["bob@example.test"]["last_login"] is None
    human = stack.cli.ok("user", "show", USER)
    assert str(units.format_utc(when)) in human, human

    # POP3 counts too, with its own row.
    set_last_login(stack.db, PAST)
    start = int(time.time())
    assert pop3_login(stack.dovecot, USER)
    assert wait_recorded(stack, "pop3", start) == last_login(stack.db)
    assert set(recorded(stack.db)) == {(USER, "imap"), (USER, "pop3")}


def plugins(stack: Stack, protocol: str) -> set[str]:
    proc = subprocess.run(
        ["doveconf", "-c", str(stack.dovecot.conf_path), "-f", f"protocol={protocol}"]
        + ["-h", "mail_plugins"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(proc.stdout.split())


def test_the_plugin_is_loaded_for_imap_and_pop3_only(stack: Stack) -> None:
    # A second `protocol imap` block keeps what 90-mailwarden-quota.conf put there.
    assert plugins(stack, "imap") >= {"quota", "quota_clone", "imap_quota", "last_login"}
    assert plugins(stack, "pop3") >= {"quota", "quota_clone", "last_login"}
    assert "last_login" not in plugins(stack, "lmtp") | plugins(stack, "doveadm")


def test_deliveries_auth_checks_and_failed_logins_are_no_logins(stack: Stack) -> None:
    set_last_login(stack.db, PAST)
    # A wrong password over IMAP and POP3.
    with IMAP(stack.dovecot.imap_port, fresh_ip()) as imap, pytest.raises(imaplib.IMAP4.error):
        imap.login(USER, "wrong")
    # What Postfix's SMTP AUTH does: a passdb lookup in Dovecot's auth service, no session.
    assert stack.dovecot.doveadm("auth", "test", USER, PASSWORD).returncode == 0
    # A delivery through Dovecot's own LMTP server, then doveadm reading the mailbox.
    with smtplib.LMTP("127.0.0.1", stack.dovecot.lmtp_port, timeout=30) as lmtp:
        lmtp.sendmail("someone@outside.test", [USER], b"Subject: lmtp\r\n\r\nhello\r\n")
    assert (
        stack.dovecot.doveadm("mailbox", "status", "-u", USER, "messages", "INBOX").returncode == 0
    )

    # A real login afterwards is recorded: had any of the above written, it came first.
    start = int(time.time())
    assert imap_login(stack.dovecot, "bob@example.test")
    wait_for("bob's login", lambda: last_login(stack.db, "bob@example.test") != PAST)
    assert last_login(stack.db) == PAST
    assert {service for (user, service) in recorded(stack.db) if user == USER} == set()
    assert recorded(stack.db)[("bob@example.test", "imap")] >= start


# SQLite has no accounts: the dict process writes the file as root (contrib/README.md).
@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
def test_the_dict_account_writes_only_its_tables(stack: Stack) -> None:
    assert imap_login(stack.dovecot, USER)
    wait_for("the IMAP login", lambda: last_login(stack.db))
    writer = Database(stack.dict_url)
    try:
        with pytest.raises(StoreError), writer.transaction() as tx:
            tx.execute("UPDATE mailboxes SET last_login = 1 WHERE address = ?", (USER,))
        with pytest.raises(StoreError), writer.read() as tx:
            tx.all("SELECT address FROM mailboxes")
    finally:
        writer.close()
    assert last_login(stack.db) != 1
