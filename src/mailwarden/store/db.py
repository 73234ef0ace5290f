"""Database: connections, the dialect switch and transactions; the only place that imports a driver.

Who calls it: ``store.open_database`` builds one ``Database`` per process from the
configured URL; every store module runs its statements through the ``Tx`` it is given.

URLs: ``sqlite:////absolute/path.db`` (sqlite3) or
``mysql://user:password@host:port/dbname`` (PyMySQL), optionally ``?unix_socket=/path``.
Statements are written once with ``?`` placeholders and bound parameters only; for MySQL
they are translated to PyMySQL's ``%s`` style. Nothing is ever formatted into SQL text.

SQLite: every connection waits up to ``connect_timeout`` seconds (the busy timeout) for
another connection's write lock instead of failing at once, and the file is kept in WAL
mode (``PRAGMA journal_mode = WAL``, persistent in the file): readers never wait for a
writer nor make one wait. That matters for readers mailwarden does not control: Postfix's
``dict_sqlite`` sets no busy timeout and its proxymap dies (``fatal: ... database is
locked?``) on the first SQLITE_BUSY, which a rollback-journal file gives it whenever a
daemon commits. A file still in rollback mode (created before this) is switched the first
time a mailwarden process opens it (``db upgrade``, setup, any daemon or command) -
unless other users may read it but not write it (the 0640 layout of older setups, where
the switch would lock Postfix out): ``share_sqlite`` (setup) fixes the modes and switches
it then. A file mailwarden may not write stays as it is.
``share_sqlite`` sets the owner, group and modes that let another user's reader in: in
WAL mode a reader writes the ``-shm`` file and may have to create ``-wal``/``-shm``.

Threads: each thread gets its own connection (``threading.local`` on the instance), so a
``Database`` may be shared by a thread pool, libmilter threads or ``asyncio.to_thread``.

Errors: ``StoreUnavailable`` when the server cannot be reached or the connection drops
(the connection is discarded and re-opened on the next call); ``Conflict`` for a
uniqueness / foreign-key / check violation (with the caller's message when given);
``StoreError`` for any other database error. Passwords in URLs are masked in every message.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from mailwarden.errors import ConfigError, Conflict, StoreError, StoreUnavailable

Row = dict[str, Any]
Params = Sequence[Any]


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    """A parsed database URL; ``masked`` is safe to print."""

    dialect: str  # "sqlite" or "mysql"
    path: str = ""
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = ""
    password: str = ""
    database: str = ""
    unix_socket: str = ""

    @property
    def masked(self) -> str:
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        where = f"{self.host}:{self.port}"
        auth = f"{self.user}:***@" if self.password else (f"{self.user}@" if self.user else "")
        sock = f"?unix_socket={self.unix_socket}" if self.unix_socket else ""
        return f"mysql://{auth}{where}/{self.database}{sock}"


def parse_url(url: str) -> DatabaseURL:
    """Parse a database URL; ``ConfigError`` (password masked) when it is not usable."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path.startswith("/"):
            raise ConfigError(
                f"database url {url!r}: the path must be absolute (sqlite:////abs/x.db)"
            )
        return DatabaseURL("sqlite", path=path)
    if url.startswith("mysql://"):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        unknown = set(query) - {"unix_socket"}
        try:
            port = parts.port or 3306
        except ValueError:
            port = -1
        parsed = DatabaseURL(
            "mysql",
            host=parts.hostname or "localhost",
            port=port,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=parts.path.lstrip("/"),
            unix_socket=query.get("unix_socket", [""])[0],
        )
        if port < 0 or not parsed.database or unknown:
            raise ConfigError(
                f"database url {parsed.masked}: expected mysql://user:pass@host:port/db"
            )
        return parsed
    raise ConfigError("database url must start with sqlite:/// or mysql://")


class Tx:
    """One open transaction. Every statement uses ``?`` placeholders and bound values."""

    def __init__(self, dialect: str, conn: Any) -> None:
        self.dialect = dialect
        self._conn = conn

    def _sql(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s") if self.dialect == "mysql" else sql

    def pick(self, *, mysql: str, sqlite: str) -> str:
        """Choose the dialect's variant of a statement that cannot be written once."""
        return mysql if self.dialect == "mysql" else sqlite

    def _run(self, sql: str, params: Params, conflict: str | None) -> Any:
        cur = self._conn.cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
        except Exception as exc:
            raise _translate(exc, conflict) from exc
        return cur

    def execute(self, sql: str, params: Params = (), *, conflict: str | None = None) -> int:
        """Run a statement; return the number of rows it changed."""
        return int(self._run(sql, params, conflict).rowcount)

    def insert(self, sql: str, params: Params = (), *, conflict: str | None = None) -> int:
        """Run an INSERT; return the new row id."""
        return int(self._run(sql, params, conflict).lastrowid)

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        cur = self._run(sql, params, None)
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def one(self, sql: str, params: Params = ()) -> Row | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        cur = self._run(sql, params, None)
        row = cur.fetchone()
        return None if row is None else row[0]


def _translate(exc: Exception, conflict: str | None) -> Exception:
    """Map a driver exception onto the mailwarden error tree."""
    import pymysql

    if isinstance(exc, sqlite3.IntegrityError | pymysql.err.IntegrityError):
        return Conflict(conflict or f"constraint violated: {_first_line(exc)}")
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
        code = exc.args[0] if exc.args else 0
        if isinstance(code, int) and code in (3819, 4025):  # CHECK constraint failed
            return Conflict(conflict or f"constraint violated: {_first_line(exc)}")
        return StoreUnavailable(f"database connection failed: {_first_line(exc)}")
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return StoreUnavailable(f"database busy: {exc}")
    return StoreError(f"database error: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


class Database:
    """Connections for one database URL, one per thread, opened lazily."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        create: bool = False,
        read_only: bool = False,
    ) -> None:
        self.url = parse_url(url)
        self.dialect = self.url.dialect
        self._timeout = connect_timeout
        self._create = create
        # read_only (someone else's database, e.g. an import source): SQLite opened with
        # mode=ro and left in its journal mode; MySQL sessions READ ONLY.
        self._read_only = read_only
        self._local = threading.local()

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            return self._connect_sqlite()
        return self._connect_mysql()

    def _connect_sqlite(self) -> sqlite3.Connection:
        path = self.url.path
        if not self._create and not os.path.exists(path):
            hint = "" if self._read_only else "; run 'mailwarden db init'"
            raise StoreUnavailable(f"database {self.url.masked} does not exist{hint}")
        if self._create:
            os.makedirs(os.path.dirname(path) or "/", mode=0o750, exist_ok=True)
        try:
            # timeout= is SQLite's busy timeout (sqlite3_busy_timeout), in seconds.
            if self._read_only:
                return sqlite3.connect(
                    "file:" + quote(path) + "?mode=ro",
                    uri=True,
                    timeout=self._timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            conn = sqlite3.connect(
                path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA foreign_keys = ON")
            if _wal_safe(path):
                use_wal(conn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open database {self.url.masked}: {exc}") from None
        return conn

    def _connect_mysql(self) -> Any:
        import pymysql

        u = self.url
        try:
            conn = pymysql.connect(
                host=u.host,
                port=u.port,
                user=u.user,
                password=u.password,
                database=u.database,
                unix_socket=u.unix_socket or None,
                connect_timeout=max(1, int(self._timeout)),
                read_timeout=30,
                write_timeout=30,
                charset="utf8mb4",
                autocommit=True,
            )
            if self._read_only:
                conn.cursor().execute("SET SESSION TRANSACTION READ ONLY")
        except pymysql.err.MySQLError as exc:
            raise StoreUnavailable(
                f"cannot connect to database {u.masked}: {_first_line(exc)}"
            ) from None
        return conn

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """Run a block atomically: commit on success, roll back on any exception."""
        conn = self._connection()
        begin = "BEGIN IMMEDIATE" if self.dialect == "sqlite" and write else "BEGIN"
        try:
            conn.cursor().execute(begin)
        except Exception as exc:
            self._discard()
            raise _translate(exc, None) from exc
        try:
            yield Tx(self.dialect, conn)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                conn.cursor().execute("ROLLBACK")
            if isinstance(exc, StoreUnavailable) or _is_connection_error(exc):
                self._discard()
            raise
        try:
            conn.cursor().execute("COMMIT")
        except Exception as exc:
            self._discard()
            raise _translate(exc, None) from exc

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        """A read-only transaction (consistent snapshot, takes no write lock in SQLite)."""
        return self.transaction(write=False)

    def ping(self) -> None:
        """One round trip (``SELECT 1``): raises ``StoreError`` when the store is not usable."""
        with self.read() as tx:
            tx.scalar("SELECT 1")

    def close(self) -> None:
        self._discard()


def use_wal(conn: sqlite3.Connection) -> str:
    """Switch a SQLite file to WAL mode unless it is already; the journal mode it has now.

    The switch needs a moment with no other connection's lock (the busy timeout waits for
    it) and write access; a file mailwarden may only read stays in its mode.
    """
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    if mode in ("wal", "memory"):
        return mode
    try:
        return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
    except sqlite3.OperationalError:  # read-only file or directory, or busy past the timeout
        return mode


def _wal_safe(path: str) -> bool:
    """False for a file others may read but not write (the 0640 layout of older setups).

    A WAL reader writes ``-shm``, which SQLite creates with the database file's mode:
    switching such a file would lock its readers (Postfix's proxymap) out until
    ``share_sqlite`` (run by setup) gives them write access; it switches the file then.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return True  # being created: only this process's user uses it yet
    group_ro = bool(mode & 0o040) and not mode & 0o020
    other_ro = bool(mode & 0o004) and not mode & 0o002
    return not (group_ro or other_ro)


# Modes for a SQLite database that other users' processes read (``share_sqlite``).
SHARED_DIR_MODE = 0o2770  # setgid: -wal/-shm created by any reader get the group
SHARED_FILE_MODE = 0o660  # SQLite gives -wal and -shm the database file's mode


def share_sqlite(path: str, gid: int) -> None:
    """Let the members of group ``gid`` read the SQLite database at ``path``, nobody else.

    In WAL mode a reader maps and writes the ``-shm`` file and, when no other connection
    has the database open, creates ``-wal`` and ``-shm``; SQLite creates both with the
    database file's mode and, when running as root, its owner and group. So the directory
    is ``root:GROUP 2770`` and the database, ``-wal`` and ``-shm`` are ``root:GROUP 0660``:
    the group may read (and technically write) the database, others get nothing (it holds
    password hashes). The file is switched to WAL mode after the modes are set.
    """
    directory = os.path.dirname(path) or "/"
    os.chown(directory, 0, gid)
    os.chmod(directory, SHARED_DIR_MODE)
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chown(name, 0, gid)
            os.chmod(name, SHARED_FILE_MODE)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        use_wal(conn)  # now that -wal and -shm will be created with the shared modes
    finally:
        conn.close()


def _is_connection_error(exc: BaseException) -> bool:
    import pymysql

    return isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError)
