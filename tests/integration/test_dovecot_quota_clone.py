"""IMAP deletions reach quota_usage: Dovecot's quota_clone plugin and the schema 0004 triggers.

The mailwarden LDA keeps ``quota_usage`` current on delivery; the policy daemon refuses
RCPT (452 4.2.2) from it. A user who empties a full mailbox over IMAP changes only
Dovecot's view (``quota = maildir``, the same ``maildirsize``). With
contrib/dovecot/91-mailwarden-quota-clone.conf Dovecot writes its usage through dict-sql
(dovecot-dict-mailwarden.conf.ext.{mysql,sqlite}) into ``dovecot_quota``, whose triggers
copy it into ``quota_usage``.

The end-to-end test runs both dialects: CLI-created mailbox with a small quota, messages
delivered by ``mailwarden deliver`` until it is full and a running ``mailwarden.policyd``
refuses it, then IMAP STORE \\Deleted + EXPUNGE in a real Dovecot 2.3 with the contrib
files, and ``quota_usage`` must equal ``doveadm quota get`` and policyd must accept again.
With MariaDB, Dovecot's dict account may only SELECT/INSERT/UPDATE ``dovecot_quota``: the
write into ``quota_usage`` runs with the triggers' definer rights.
"""

from __future__ import annotations

import imaplib
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from mailwarden.store.db import Database, parse_url
from tests.conftest import Cli, run_bin, write_config
from tests.contrib import CONTRIB, DOVECOT_VIEWS, mail_settings, placeholders, reader_url, render
from tests.integration.test_contrib_dovecot import use_contrib_auth
from tests.integration.test_policy_mta import Policyd
from tests.servers import Dovecot, free_port, missing_requirements

pytestmark = pytest.mark.integration

USER = "full@example.test"
PASSWORD = "Corr3ct horse"
QUOTA = 8192  # bytes
EX_TEMPFAIL = 75
BODY = "0123456789abcdef\r\n" * 80
SIZE = len(BODY) + 200  # the SIZE= a client would announce for one more such message


def usage(db: Database, address: str = USER) -> dict[str, Any] | None:
    with db.read() as tx:
        rows = tx.all(
            "SELECT q.bytes, q.messages, q.warned_percent, q.updated_at FROM quota_usage q "
            "JOIN mailboxes m ON m.id = q.mailbox_id WHERE m.address = ?",
            (address,),
        )
    return {k: int(v) for k, v in rows[0].items()} if rows else None


# --- the triggers alone, with the statements a dict-sql writer may use -----------------


def test_triggers_copy_every_write_form(cli: Cli) -> None:
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    db = Database(cli.url)
    mysql = db.dialect == "mysql"
    try:
        with db.transaction() as tx:  # no quota_usage row yet: the trigger inserts one
            tx.execute(
                "INSERT INTO dovecot_quota (username, bytes, messages) VALUES (?, 100, 2)", (USER,)
            )
        row = usage(db)
        assert row is not None
        assert (row["bytes"], row["messages"], row["warned_percent"]) == (100, 2, 0)
        assert abs(row["updated_at"] - time.time()) < 60

        with db.transaction() as tx:  # the LDA's warning mark survives every copy
            tx.execute("UPDATE quota_usage SET warned_percent = 90, updated_at = 0")
        upsert = (
            "INSERT INTO dovecot_quota (username, bytes, messages) VALUES (?, 300, 3) "
            "ON DUPLICATE KEY UPDATE bytes = VALUES(bytes), messages = VALUES(messages)"
            if mysql
            else "INSERT INTO dovecot_quota (username, bytes, messages) VALUES (?, 300, 3) "
            "ON CONFLICT (username) DO UPDATE SET bytes = excluded.bytes, "
            "messages = excluded.messages"
        )
        replace = (
            "REPLACE INTO dovecot_quota (username, bytes, messages) VALUES (?, 400, 4)"
            if mysql
            else "INSERT OR REPLACE INTO dovecot_quota (username, bytes, messages) "
            "VALUES (?, 400, 4)"
        )
        for stmt, want in (
            (upsert, (300, 3)),
            (replace, (400, 4)),
            ("UPDATE dovecot_quota SET bytes = 500 WHERE username = ?", (500, 4)),
            ("UPDATE dovecot_quota SET messages = NULL WHERE username = ?", (500, 4)),
        ):
            with db.transaction() as tx:
                tx.execute(stmt, (USER,))
            row = usage(db)
            assert row is not None
            assert (row["bytes"], row["messages"], row["warned_percent"]) == (*want, 90), stmt
            assert row["updated_at"] > 0, stmt

        with db.transaction() as tx:  # the login's case does not matter; strangers are kept
            tx.execute("DELETE FROM dovecot_quota")
            tx.execute(
                "INSERT INTO dovecot_quota (username, bytes, messages) VALUES (?, 600, 6)",
                (USER.upper(),),
            )
            tx.execute(
                "INSERT INTO dovecot_quota (username, bytes, messages) "
                "VALUES ('nobody@example.test', 1, 1)"
            )
        row = usage(db)
        assert row is not None and (row["bytes"], row["messages"]) == (600, 6)
        with db.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM quota_usage") == 1
            assert tx.scalar("SELECT COUNT(*) FROM dovecot_quota") == 2
    finally:
        db.close()


# --- end to end: LDA fills the mailbox, IMAP empties it, policyd accepts again ---------


@dataclass
class Stack:
    cli: Cli
    db: Database
    config: Path
    dovecot: Dovecot
    policyd: Policyd


def dict_url(url: str, server: Any) -> str:
    """The URL Dovecot's dict writes with: for MySQL an account that may only write
    dovecot_quota (contrib/README.md); SQLite URLs come back unchanged."""
    db = parse_url(url)
    if db.dialect != "mysql":
        return url
    user, password = f"{db.database}_dict"[:80], secrets.token_hex(12)
    stmts = []
    for host in ("127.0.0.1", "localhost"):
        account = f"'{user}'@'{host}'"
        stmts.append(f"CREATE OR REPLACE USER {account} IDENTIFIED BY '{password}'")
        stmts.append(
            f"GRANT SELECT, INSERT, UPDATE ON `{db.database}`.`dovecot_quota` TO {account}"
        )
    server.execute(";\n".join(stmts) + ";")
    return f"mysql://{user}:{password}@{db.host}:{db.port}/{quote(db.database)}"


def install_quota_clone(dovecot: Dovecot, values: dict[str, str]) -> None:
    """The contrib dict map in the instance's directory, 91-... appended to dovecot.conf."""
    values = values | {"@DOVECOT_DIR@": str(dovecot.dir)}
    dialect = values["@DB_DIALECT@"]
    dict_map = dovecot.dir / "dovecot-dict-mailwarden.conf.ext"
    dict_map.write_text(
        render(
            (CONTRIB / f"dovecot/dovecot-dict-mailwarden.conf.ext.{dialect}").read_text(), values
        )
    )
    shutil.chown(dict_map, "root", "dovecot")
    dict_map.chmod(0o640)
    clone = render((CONTRIB / "dovecot/91-mailwarden-quota-clone.conf").read_text(), values)
    with dovecot.conf_path.open("a") as conf:
        conf.write("\n# contrib/dovecot/91-mailwarden-quota-clone.conf\n" + clone)


@pytest.fixture
def stack(cli: Cli, request: pytest.FixtureRequest, workdir: Path) -> Iterator[Stack]:
    if missing := missing_requirements(Dovecot):
        pytest.skip(f"Dovecot not usable: {', '.join(missing)}")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", USER, "--password-stdin", "--quota", str(QUOTA), stdin=PASSWORD + "\n")
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
    dict_values = placeholders(dict_url(cli.url, server), mail_root=root, uid=uid, gid=gid)
    install_quota_clone(dovecot, dict_values)

    base = cli.config_path.parent / f"{cli.config_path.stem}-qc"
    base.mkdir()
    config = write_config(
        base / "mailwarden.toml",
        cli.url,
        root,
        f'[lda]\nlmtp_listen = []\nmetrics_dir = "{base}/metrics"\nsubmit = "smtp"\n'
        f"smtp_port = {free_port()}\n[policy]\ncache_ttl = 0.2\n",
    )
    db = Database(cli.url)
    dovecot.start()
    policyd = Policyd(config, base / "policyd.log")
    try:
        yield Stack(cli, db, config, dovecot, policyd)
    finally:
        policyd.stop()
        dovecot.stop()
        db.close()


def deliver(stack: Stack, n: int) -> int:
    msg = (
        f"From: someone@outside.test\r\nTo: {USER}\r\nSubject: fill {n}\r\n"
        f"Message-ID: <fill{n}.{time.monotonic_ns()}@outside.test>\r\n\r\n"
        + "0123456789abcdef\r\n"
        * 80
    ).encode()
    proc = run_bin(
        "--config",
        str(stack.config),
        "deliver",
        "-f",
        "someone@outside.test",
        "-d",
        USER,
        stdin=msg,
    )
    assert proc.returncode in (0, EX_TEMPFAIL), proc.stdout + proc.stderr
    return proc.returncode


def policy(stack: Stack) -> str:
    """policyd's answer for RCPT TO the mailbox (a fresh connection, like Postfix)."""
    from tests.integration.test_policy_daemon import talk

    request = (
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
        f"client_address=192.0.2.1\nsender=someone@outside.test\nrecipient={USER}\n"
        f"size={SIZE}\n\n"
    )
    return talk(stack.policyd.port, request.encode()).decode().strip()


def doveadm_quota(dovecot: Dovecot) -> dict[str, int]:
    """``doveadm quota get``: {"STORAGE": KiB, "MESSAGE": count}."""
    return quota_table(dovecot.doveadm("-f", "tab", "quota", "get", "-u", USER))


def quota_table(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """``doveadm -f tab quota get`` output as {"STORAGE": KiB, "MESSAGE": count}."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.split("\t") for line in proc.stdout.strip().splitlines()]
    head = lines[0]
    return {row[head.index("Type")]: int(row[head.index("Value")]) for row in lines[1:]}


def maildirsize(root: Path) -> tuple[int, int]:
    lines = (root / "example.test/full/maildirsize").read_text().splitlines()[1:]
    return sum(int(x.split()[0]) for x in lines), sum(int(x.split()[1]) for x in lines)


def imap_keep_first(port: int, user: str, password: str) -> int:
    """Over IMAP, delete and expunge every INBOX message but the first; return how many
    there were."""
    with imaplib.IMAP4("127.0.0.1", port, timeout=30) as imap:
        imap.login(user, password)
        assert imap.select("INBOX")[0] == "OK"
        uids = imap.uid("SEARCH", "ALL")[1][0].split()
        doomed = b",".join(uids[1:]).decode()
        assert imap.uid("STORE", doomed, "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
        assert imap.expunge()[0] == "OK"
        imap.logout()
    return len(uids)


def wait_for(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return result


def test_imap_expunge_reaches_quota_usage_and_policyd(stack: Stack) -> None:
    root, _, _ = mail_settings(stack.cli.config_path)
    # The LDA fills the mailbox until it refuses (4.2.2) and quota_usage says full.
    delivered = 0
    for n in range(20):
        if deliver(stack, n) == EX_TEMPFAIL:
            break
        delivered += 1
    full = usage(stack.db)
    assert full is not None and delivered >= 3, full
    # Full for a message of that size: policyd refuses at RCPT. (maildirsize may count
    # one message more than quota_usage: the LDA's 90 % quota warning.)
    assert full["bytes"] + SIZE > QUOTA, full
    assert "452 4.2.2" in policy(stack)

    # The user deletes all but one message over IMAP.
    assert imap_keep_first(stack.dovecot.imap_port, USER, PASSWORD) >= delivered

    # Dovecot's quota_clone wrote dovecot_quota; the triggers copied it into quota_usage.
    now = wait_for(
        "quota_usage to drop",
        lambda: (u := usage(stack.db)) is not None and u["messages"] == 1 and u,
    )
    want = doveadm_quota(stack.dovecot)
    assert now["messages"] == want["MESSAGE"] == 1
    assert -(-now["bytes"] // 1024) == want["STORAGE"]  # doveadm rounds KiB up
    assert (now["bytes"], now["messages"]) == maildirsize(root)
    assert now["bytes"] < QUOTA
    assert now["warned_percent"] == full["warned_percent"]  # left to the LDA
    with stack.db.read() as tx:
        row = tx.all("SELECT bytes, messages FROM dovecot_quota WHERE username = ?", (USER,))
    assert [(int(r["bytes"]), int(r["messages"])) for r in row] == [(now["bytes"], 1)]

    # And the policy daemon accepts the recipient again (its cache_ttl is 0.2 s).
    time.sleep(0.3)
    assert policy(stack) == "action=DUNNO"
    assert deliver(stack, 99) == 0
