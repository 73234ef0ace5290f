"""Database dumps for ``mailwarden backup``: write one, check one, load one back.

Who calls it: ``mailwarden.backup.run`` (``dump``), ``backup.verify`` (``check_dump``) and
``backup.restore`` (``restore``, ``counts``). This is the only backup code that talks to the
database or runs its client programs.

SQLite: ``dump`` copies the live file with SQLite's online backup API
(``sqlite3.Connection.backup``): one consistent snapshot, taken while the daemons keep
reading and writing (WAL mode); the copy is switched to a rollback journal so that it is
one self-contained file. ``restore`` copies the dump back the same way, page by page into
the live database under its write lock, so open connections see the restored data, and
switches the file back to WAL mode if it was (``store.db``: Postfix needs it). The
restore changes SQLite's schema cookie: a reader holding prepared statements (Dovecot's
auth worker) fails one lookup with "database schema has changed" unless reloaded.

MariaDB/MySQL: ``mariadb-dump --single-transaction`` (or ``mysqldump``), a consistent
snapshot of InnoDB tables without locking them; triggers and views included. ``restore``
feeds the dump to ``mariadb`` (or ``mysql``). The account and password from the database
URL reach both programs through a defaults file (``--defaults-extra-file``) that only the
caller can read (0600, in a private temporary directory, removed afterwards): never on a
command line (``ps`` shows those to every user) nor in a message.

Errors: ``OSError(ENOSPC)`` when the disk fills while writing a dump (the caller removes
the partial backup); ``StoreError`` for any other failure of a dump or restore (one line,
the program's own first error line, no password); ``check_dump`` returns a problem
instead of raising.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from urllib.parse import quote

from mailwarden.errors import StoreError
from mailwarden.store.db import DatabaseURL, Tx, parse_url, use_wal

SQLITE_DUMP = "database.sqlite"
MYSQL_DUMP = "database.sql"
MYSQL_TRAILER = "-- Dump completed"
DUMP_TIMEOUT = 6 * 3600.0


def dump_name(url: str) -> str:
    """The file name of the dump of the database at ``url`` inside a backup."""
    return SQLITE_DUMP if parse_url(url).dialect == "sqlite" else MYSQL_DUMP


def dump(url: str, dest: str) -> None:
    """Write a consistent dump of the database at ``url`` to the new file ``dest``."""
    db = parse_url(url)
    if db.dialect == "sqlite":
        _dump_sqlite(db.path, dest)
    else:
        _dump_mysql(db, dest)


def _ro_uri(path: str) -> str:
    return f"file:{quote(path)}?mode=ro"


def _dump_sqlite(path: str, dest: str) -> None:
    if not os.path.isfile(path):
        raise StoreError(f"database {path} does not exist")
    os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    try:
        with (
            closing(sqlite3.connect(_ro_uri(path), uri=True, timeout=30)) as src,
            closing(sqlite3.connect(dest, isolation_level=None)) as dst,
        ):
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as exc:
        if "full" in str(exc):  # SQLITE_FULL: "database or disk is full"
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dest) from None
        raise StoreError(f"database dump failed: {exc}") from None
    _fsync(dest)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _option_value(value: str) -> str:
    """A value for a MySQL option file: double-quoted, with the escapes it decodes."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def defaults_text(db: DatabaseURL) -> str:
    """The ``[client]`` group that tells the client programs where and who to connect."""
    lines = ["[client]", f"user={_option_value(db.user)}"]
    if db.password:
        lines.append(f"password={_option_value(db.password)}")
    if db.unix_socket:
        lines.append(f"socket={_option_value(db.unix_socket)}")
    else:
        lines += [f"host={_option_value(db.host)}", f"port={db.port}"]
    return "\n".join(lines) + "\n"


@contextmanager
def defaults_file(db: DatabaseURL) -> Iterator[str]:
    """A 0600 option file with the URL's account, in a private directory, removed after."""
    private = tempfile.mkdtemp(prefix="mailwarden-db-")  # 0700
    path = os.path.join(private, "client.cnf")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(defaults_text(db))
        yield path
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _program(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise StoreError(f"{' or '.join(names)} not found: install the MariaDB client")


def dump_argv(program: str, cnf: str, database: str) -> list[str]:
    """The dump command line: no account, no password (both come from ``cnf``)."""
    return [
        program,
        f"--defaults-extra-file={cnf}",  # must come first (mysql option parsing)
        "--single-transaction",
        "--triggers",
        "--no-tablespaces",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        "--",
        database,
    ]


def _dump_mysql(db: DatabaseURL, dest: str) -> None:
    program = _program("mariadb-dump", "mysqldump")
    with defaults_file(db) as cnf:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            proc = subprocess.run(
                dump_argv(program, cnf, db.database),
                stdout=fd,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                timeout=DUMP_TIMEOUT,
                check=False,
            )
            if proc.returncode == 0:
                os.fsync(fd)
        finally:
            os.close(fd)
    if proc.returncode != 0:
        raise _client_error("database dump", proc.stderr, dest)


def _client_error(what: str, stderr: bytes, path: str) -> OSError | StoreError:
    text = stderr.decode("utf-8", "replace")
    if "errno 28" in text.lower() or "no space left" in text.lower():
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    lines = [line for line in text.splitlines() if line.strip() and "Warning" not in line]
    return StoreError(f"{what} failed: {lines[0] if lines else 'no error output'}")


def check_dump(path: str) -> str | None:
    """Why the dump at ``path`` is not usable, or None when it opens (SQLite:
    ``PRAGMA integrity_check``) or is complete (MySQL: the dump program's trailer)."""
    if not os.path.isfile(path):
        return "database dump missing"
    if path.endswith(SQLITE_DUMP):
        try:
            with closing(sqlite3.connect(_ro_uri(path), uri=True)) as conn:
                result = conn.execute("PRAGMA integrity_check").fetchone()
                conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()
        except sqlite3.Error as exc:
            return f"database dump does not open: {exc}"
        return None if result and result[0] == "ok" else f"integrity_check: {result}"
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 4096))
        tail = f.read().decode("utf-8", "replace")
        f.seek(0)
        head = f.read(1 << 20).decode("utf-8", "replace")
    if MYSQL_TRAILER not in tail:
        return "database dump is incomplete (no 'Dump completed' trailer)"
    if "CREATE TABLE" not in head:
        return "database dump holds no CREATE TABLE"
    return None


def restore(url: str, path: str) -> None:
    """Replace the contents of the database at ``url`` with the dump at ``path``."""
    db = parse_url(url)
    if db.dialect == "sqlite":
        try:
            with (
                closing(sqlite3.connect(_ro_uri(path), uri=True)) as src,
                closing(sqlite3.connect(db.path, timeout=30, isolation_level=None)) as dst,
            ):
                mode = str(dst.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                src.backup(dst)
                if mode == "wal":  # the dump's rollback journal came with its pages
                    use_wal(dst)
        except sqlite3.Error as exc:
            raise StoreError(f"database restore failed: {exc}") from None
        return
    program = _program("mariadb", "mysql")
    with defaults_file(db) as cnf, open(path, "rb") as dump_in:
        proc = subprocess.run(
            [program, f"--defaults-extra-file={cnf}", "--batch", "--", db.database],
            stdin=dump_in,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=DUMP_TIMEOUT,
            check=False,
        )
    if proc.returncode != 0:
        raise _client_error("database restore", proc.stderr, path)


COUNTS = (
    "SELECT (SELECT COUNT(*) FROM domains) AS domains, "
    "(SELECT COUNT(*) FROM mailboxes) AS mailboxes"
)


def counts(tx: Tx) -> dict[str, int]:
    """Domains and mailboxes in the live database (what ``restore --dry-run`` compares)."""
    row = tx.one(COUNTS) or {}
    return {k: int(v) for k, v in row.items()}


def counts_sqlite(path: str) -> dict[str, int]:
    """Domains and mailboxes in a SQLite dump."""
    with closing(sqlite3.connect(_ro_uri(path), uri=True)) as conn:
        domains, boxes = conn.execute(COUNTS).fetchone()
    return {"domains": int(domains), "mailboxes": int(boxes)}


def mailboxes(tx: Tx) -> list[dict[str, str]]:
    """``{address, domain, maildir}`` of every mailbox, by address (the backup manifest)."""
    rows = tx.all(
        "SELECT m.address, d.name AS domain, m.maildir FROM mailboxes m "
        "JOIN domains d ON d.id = m.domain_id ORDER BY m.address"
    )
    return [{k: str(v) for k, v in row.items()} for row in rows]
