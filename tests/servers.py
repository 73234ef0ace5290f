"""Start REAL mail servers for integration tests: MariaDB, Dovecot, Postfix, clamd, spamd, Exim.

Each class gets a work dir ``base`` (created if missing) and creates its own
sub directory in it (``base/mysql``, ``base/dovecot``, ``base/dovecot-2``, ...).
Everything listens on 127.0.0.1 (free ports picked at construction time) or on
unix sockets below ``base``; nothing from the packaged default instances (/etc/mysql,
/etc/dovecot, /etc/postfix/main.cf, ...) is used or started.

The configuration follows the proven recipe in /work/shared/testbed/ (see
NOTES.md there).  Requirements: root, the Debian packages and users that
``scripts/install-deps.sh`` installs, and a work dir that the unprivileged
server users (mysql, postfix, vmail, Debian-exim) can traverse -- pytest's
``tmp_path`` is mode 0700 and does not qualify, use :func:`make_workdir`.

Typical fixture::

    base = make_workdir()
    db = MariaDB(base)
    db.start()
    url = db.create_database("mailwarden", "mw", "secret")
    ...
    db.stop()
    shutil.rmtree(base)

Every server has ``start()`` (waits until it is ready, bounded by a deadline;
raises RuntimeError with the tail of its log on failure), ``stop()`` (waits
until the process is really gone; safe to call twice or before start) and can
be used as a context manager.  Servers still running at interpreter exit are
stopped by an atexit hook.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, NoReturn, Self
from urllib.parse import quote

__all__ = [
    "EXIM_ROOT_DEFAULT",
    "LOOPBACK",
    "READY_TIMEOUT",
    "STOP_TIMEOUT",
    "VMAIL_GID",
    "VMAIL_UID",
    "Clamd",
    "Dovecot",
    "Exim",
    "MariaDB",
    "Postfix",
    "Spamd",
    "banner_ok",
    "check_workdir",
    "free_port",
    "make_workdir",
    "missing_requirements",
    "pid_alive",
    "port_open",
    "session_members",
    "unix_socket_open",
    "wait_port",
    "wait_unix_socket",
]

LOOPBACK = "127.0.0.1"
VMAIL_UID = 5000
VMAIL_GID = 5000
READY_TIMEOUT = 30.0
"""Default bound (seconds) for a server to become ready."""
STOP_TIMEOUT = 30.0
"""Default bound (seconds) for a server to exit after SIGTERM before SIGKILL."""

EXIM_ROOT_DEFAULT = Path("/opt/mailwarden-test/exim")
"""Where scripts/install-deps.sh unpacks Exim; override with $MAILWARDEN_EXIM_ROOT."""

_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_REGISTRY_LOCK = Path(tempfile.gettempdir()) / "mailwarden-tests-registry.lock"
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the NUL


# --------------------------------------------------------------------------- helpers


def _bin(name: str) -> str:
    """Absolute path of a program, also looking in the sbin dirs."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":" + _SBIN_PATH)
    if path is None:
        raise RuntimeError(f"program {name!r} not found (run scripts/install-deps.sh)")
    return path


_handed_out_ports: set[int] = set()


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1, never the same one twice per process."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("could not find a free TCP port")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def banner_ok(port: int, prefix: bytes, host: str = LOOPBACK) -> bool:
    """True if a TCP server on host:port greets with a line starting with prefix."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as sock:
            return sock.makefile("rb").readline(1024).startswith(prefix)
    except OSError:
        return False


def unix_socket_open(path: Path | str) -> bool:
    """True if something accepts connections on the unix stream socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _poll(
    check: Callable[[], bool],
    deadline: float,
    what: str,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Call check() until it is true; TimeoutError at deadline (a time.monotonic() value).

    alive(), if given, is consulted between attempts so that a server which
    died during start-up fails at once instead of at the deadline.
    """
    delay = 0.01
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise _ProcessDied(f"process exited while waiting for {what}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.2)


class _ProcessDied(RuntimeError):
    pass


def wait_port(port: int, deadline: float, host: str = LOOPBACK) -> None:
    """Wait until host:port accepts TCP connections.

    deadline is absolute, a ``time.monotonic()`` value (e.g. ``time.monotonic() + 10``);
    raises TimeoutError when it passes.
    """
    _poll(lambda: port_open(port, host), deadline, f"TCP port {host}:{port}")


def wait_unix_socket(path: Path | str, deadline: float) -> None:
    """Wait until the unix socket at path accepts connections (deadline as in wait_port)."""
    _poll(lambda: unix_socket_open(path), deadline, f"unix socket {path}")


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, session id) of pid from /proc, None if it does not exist."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2 :].split()  # state ppid pgrp session ...
    return fields[0], int(fields[3])


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (PID 1 here reaps orphans slowly)."""
    state = _proc_state(pid)
    return state is not None and state[0] not in "ZX"


def _children(pid: int) -> list[int]:
    """Live (non-zombie) child processes of pid."""
    children = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                data = Path(f"/proc/{entry.name}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            fields = data[data.rindex(")") + 2 :].split()  # state ppid ...
            if int(fields[1]) == pid and fields[0] not in "ZX":
                children.append(int(entry.name))
    return children


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session sid."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            state = _proc_state(int(entry.name))
            if state is not None and state[1] == sid and state[0] not in "ZX":
                members.append(int(entry.name))
    return members


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _wait_gone(pids: Callable[[], list[int]], timeout: float, what: str) -> None:
    """Wait until pids() is empty; SIGKILL what is left after timeout."""
    with contextlib.suppress(TimeoutError):
        _poll(lambda: not pids(), time.monotonic() + timeout, what)
        return
    for pid in pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    try:
        _poll(lambda: not pids(), time.monotonic() + 5.0, what)
    except TimeoutError:
        raise RuntimeError(f"{what}: {pids()} survived SIGKILL") from None


def _stop_daemon(pid: int, timeout: float) -> None:
    """SIGTERM a daemon (not our child); wait until it and its session (if it leads one) end."""
    state = _proc_state(pid)
    if state is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if state[1] == pid:  # session leader (dovecot, postfix master): wait for all its children
        _wait_gone(lambda: session_members(pid), timeout, f"session {pid} to exit")
    else:
        _wait_gone(lambda: [pid] if pid_alive(pid) else [], timeout, f"pid {pid} to exit")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _chown(path: Path, user: str, group: str | None = None) -> None:
    shutil.chown(path, user, group or user)


def _run(argv: Sequence[str | Path], *, input: str | None = None, timeout: float = 60.0) -> str:
    """Run a command, return stdout; RuntimeError with its output if it fails."""
    proc = subprocess.run(
        [str(a) for a in argv],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed (rc={proc.returncode}): {' '.join(map(str, argv))}\n"
            f"{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    """Serialise edits of shared files in /etc between concurrent test sessions."""
    with open(_REGISTRY_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def make_workdir(prefix: str = "mailwarden-") -> Path:
    """A new private work dir under /tmp that the server users can traverse (mode 0711).

    Others may enter it but not list it.  The caller removes it (shutil.rmtree).
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o711)
    check_workdir(path)
    return path


def check_workdir(path: Path) -> None:
    """ValueError unless path and all its parents are searchable (o+x) by other users."""
    path = path.resolve()
    for part in (path, *path.parents):
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise ValueError(
                f"{part} (mode {stat.filemode(mode)}) is not traversable by other users; the "
                "servers drop privileges to mysql/postfix/vmail/Debian-exim and need to reach "
                f"{path}. Create the work dir with tests.servers.make_workdir()."
            )


def _instance_dir(base: Path, kind: str) -> Path:
    """Create base/kind, or base/kind-2, base/kind-3, ... (mode 0755)."""
    for n in range(1, 1000):
        path = base / (kind if n == 1 else f"{kind}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        os.chmod(path, 0o755)
        return path
    raise RuntimeError(f"too many {kind} instances in {base}")


def _cool_down(path: Path) -> None:
    """Backdate mtime: Postfix waits ~2 s before reading a file modified in the last second."""
    past = time.time() - 60
    os.utime(path, (past, past))


def _check_unix_path(path: Path) -> None:
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise ValueError(f"unix socket path too long ({len(str(path))} > 107): {path}")


# --------------------------------------------------------------------------- base class

_running: set[_Server] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()


class _Server:
    """Common plumbing: instance dir, spawning, readiness, stopping, log tails."""

    kind: ClassVar[str] = "server"
    programs: ClassVar[tuple[str, ...]] = ()
    users: ClassVar[tuple[str, ...]] = ()

    def __init__(self, base: Path) -> None:
        self.base = Path(base).resolve()
        self.base.mkdir(mode=0o755, parents=True, exist_ok=True)
        check_workdir(self.base)
        self.dir = _instance_dir(self.base, self.kind)
        self._proc: subprocess.Popen[bytes] | None = None
        self._output = self.dir / f"{self.kind}.out"  # stdout/stderr of spawned processes

    # -- to override
    def start(self, timeout: float = READY_TIMEOUT) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        raise NotImplementedError

    def log_files(self) -> list[Path]:
        """Log files worth showing when something goes wrong."""
        return [self._output]

    # -- shared
    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in self.log_files():
            text = _tail(path, lines)
            if text:
                parts.append(f"--- {path} (last {lines} lines) ---\n{text}")
        return "\n".join(parts) or "(no log output)"

    def _spawn(self, argv: Sequence[str | Path]) -> subprocess.Popen[bytes]:
        with open(self._output, "ab") as out:
            proc = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self._proc = proc
        _running.add(self)
        return proc

    def _proc_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _wait_ready(
        self,
        what: str,
        check: Callable[[], bool],
        timeout: float,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        """Wait for check(); on failure stop what was started and raise with the log tail."""
        try:
            _poll(check, time.monotonic() + timeout, what, alive)
        except (TimeoutError, _ProcessDied) as exc:
            self._fail(f"not ready: {exc} (timeout {timeout:.0f}s)")

    def _fail(self, message: str) -> NoReturn:
        """Stop whatever was started and raise RuntimeError with the log tail."""
        with contextlib.suppress(Exception):
            self.stop(timeout=5.0)
        raise RuntimeError(f"{type(self).__name__} in {self.dir}: {message}\n{self.log_tail()}")

    def _stop_proc(self, timeout: float) -> None:
        """SIGTERM our child; wait until it and everything in its session are gone.

        SIGKILL whatever is left after timeout.  The session is the one
        start_new_session=True created, so it holds only this server's processes.
        """
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
        _wait_gone(lambda: session_members(proc.pid), timeout, f"{self.kind} to exit")
        proc.wait(5.0)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.dir}>"


def missing_requirements(*classes: type[_Server]) -> list[str]:
    """What is missing to run the given server classes (all if none given); [] if all good."""
    classes = classes or (MariaDB, Dovecot, Postfix, Clamd, Spamd, Exim)
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append("must run as root")
    for cls in classes:
        for program in cls.programs:
            found = (
                Path(program).is_file()
                if program.startswith("/")
                else shutil.which(program, path=os.environ.get("PATH", "") + ":" + _SBIN_PATH)
            )
            if not found:
                missing.append(f"{cls.__name__}: program {program}")
        for user in cls.users:
            try:
                pwd.getpwnam(user)
            except KeyError:
                missing.append(f"{cls.__name__}: user {user}")
    if Exim in classes and not Exim.binary().is_file():
        missing.append(f"Exim: {Exim.binary()} (run scripts/install-deps.sh)")
    if Dovecot in classes:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam("vmail")
            if (entry.pw_uid, entry.pw_gid) != (VMAIL_UID, VMAIL_GID):
                missing.append("Dovecot: user vmail must be uid/gid 5000")
    return list(dict.fromkeys(missing))


# --------------------------------------------------------------------------- MariaDB


_SQL_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_SQL_USER = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


def _sql_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class MariaDB(_Server):
    """A private mariadbd: datadir, socket and logs below base/mysql, TCP on a free port.

    Root connects over the unix socket with unix_socket auth (we are root).
    stop() then start() reuses the same datadir and port (DB-outage tests).
    """

    kind = "mysql"
    programs = ("mariadbd", "mariadb-install-db", "mariadb")
    users = ("mysql",)

    def __init__(self, base: Path, port: int | None = None) -> None:
        super().__init__(base)
        _chown(self.dir, "mysql")  # mariadbd (user mysql) writes socket, pid and log here
        self.port = port or free_port()
        self.datadir = self.dir / "data"
        # Own tmpdir: a starting mariadbd deletes '#sql*' temp files it finds in its
        # tmpdir, which breaks other instances (and concurrent install-db runs) in /tmp.
        self.tmpdir = self.dir / "tmp"
        self.tmpdir.mkdir(mode=0o700)
        _chown(self.tmpdir, "mysql")
        self._socket = self.dir / "mysqld.sock"
        _check_unix_path(self._socket)
        self.pid_file = self.dir / "mysqld.pid"
        self.error_log = self.dir / "error.log"
        self._db_users: dict[str, str] = {}

    @property
    def socket(self) -> Path:
        return self._socket

    def log_files(self) -> list[Path]:
        return [self.error_log, self._output]

    @property
    def running(self) -> bool:
        return self._proc_alive()

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        if self.running:
            return
        if not (self.datadir / "mysql").is_dir():
            _run(
                [
                    _bin("mariadb-install-db"),
                    "--no-defaults",
                    "--user=mysql",
                    f"--datadir={self.datadir}",
                    f"--tmpdir={self.tmpdir}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                timeout=120,
            )
        proc = self._spawn(
            [
                _bin("mariadbd"),
                "--no-defaults",
                "--user=mysql",
                f"--datadir={self.datadir}",
                f"--tmpdir={self.tmpdir}",
                f"--socket={self._socket}",
                f"--port={self.port}",
                f"--bind-address={LOOPBACK}",
                "--skip-name-resolve",
                f"--pid-file={self.pid_file}",
                f"--log-error={self.error_log}",
            ]
        )
        self._wait_ready(
            f"mariadbd on {self._socket} and port {self.port}",
            lambda: unix_socket_open(self._socket) and port_open(self.port),
            timeout,
            alive=lambda: proc.poll() is None,
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self._stop_proc(timeout)

    def execute(self, sql: str, database: str | None = None) -> str:
        """Run SQL as root over the unix socket; returns tab-separated rows, no header."""
        argv = [
            _bin("mariadb"),
            "--no-defaults",
            f"--socket={self._socket}",
            "--user=root",
            "--batch",
            "--skip-column-names",
            "-e",
            sql,
        ]
        if database is not None:
            argv.append(database)
        return _run(argv)

    def url(self, name: str, user: str, password: str) -> str:
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"mysql://{auth}@{LOOPBACK}:{self.port}/{name}"

    def create_database(self, name: str, user: str, password: str) -> str:
        """(Re)create database name with user/password owning it; returns its mysql:// URL.

        The account exists for host 127.0.0.1 (TCP) and localhost (unix socket).
        """
        if not _SQL_NAME.match(name):
            raise ValueError(f"bad database name {name!r}")
        if not _SQL_USER.match(user):
            raise ValueError(f"bad user name {user!r}")
        stmts = [f"DROP DATABASE IF EXISTS `{name}`", f"CREATE DATABASE `{name}`"]
        for host in (LOOPBACK, "localhost"):
            account = f"{_sql_str(user)}@{_sql_str(host)}"
            stmts += [
                f"CREATE OR REPLACE USER {account} IDENTIFIED BY {_sql_str(password)}",
                f"GRANT ALL PRIVILEGES ON `{name}`.* TO {account}",
            ]
        self.execute(";\n".join(stmts) + ";")
        self._db_users[name] = user
        return self.url(name, user, password)

    def drop_database(self, name: str) -> None:
        """Drop the database and the user create_database() made for it."""
        if not _SQL_NAME.match(name):
            raise ValueError(f"bad database name {name!r}")
        stmts = [f"DROP DATABASE IF EXISTS `{name}`"]
        user = self._db_users.pop(name, None)
        if user is not None:
            stmts += [
                f"DROP USER IF EXISTS {_sql_str(user)}@{_sql_str(host)}"
                for host in (LOOPBACK, "localhost")
            ]
        self.execute(";\n".join(stmts) + ";")


# --------------------------------------------------------------------------- Dovecot


class Dovecot(_Server):
    """A standalone Dovecot (IMAP, POP3, LMTP) with an SQL passdb+userdb.

    sql_conf_text is the content of the passdb/userdb ``args`` file (driver,
    connect, password_query, user_query, ...).  Mail is ``maildir:~/``: the
    userdb home IS the maildir, and should lie below mail_root (owned by vmail).
    mail_uid/mail_gid default to vmail, so user_query only needs ``home``.
    extra_conf is appended to dovecot.conf (plugins, quota, ...).
    """

    kind = "dovecot"
    programs = ("dovecot", "doveadm")
    users = ("dovecot", "dovenull", "vmail")

    def __init__(
        self,
        base: Path,
        sql_conf_text: str,
        mail_root: Path,
        extra_conf: str = "",
    ) -> None:
        super().__init__(base)
        self.mail_root = Path(mail_root)
        self.mail_root.mkdir(parents=True, exist_ok=True)
        os.chown(self.mail_root, VMAIL_UID, VMAIL_GID)
        check_workdir(self.mail_root)
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.lmtp_port = free_port()
        self.run_dir = self.dir / "run"  # dovecot's base_dir
        self.state_dir = self.dir / "state"
        self.state_dir.mkdir()
        _check_unix_path(self.run_dir / "login" / "imap-urlauth")
        self.log_path = self.dir / "dovecot.log"
        self.instance_name = f"mailwarden-{secrets.token_hex(4)}"
        self.sql_conf_path = self.dir / "sql.conf.ext"
        self.sql_conf_path.write_text(sql_conf_text)
        os.chmod(self.sql_conf_path, 0o600)
        self.conf_path = self.dir / "dovecot.conf"
        self.conf_path.write_text(self._config() + "\n" + extra_conf + "\n")

    def _config(self) -> str:
        return f"""\
# generated by tests/servers.py
base_dir = {self.run_dir}
state_dir = {self.state_dir}
instance_name = {self.instance_name}
protocols = imap pop3 lmtp
listen = {LOOPBACK}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
log_path = {self.log_path}
mail_location = maildir:~/
mail_uid = {VMAIL_UID}
mail_gid = {VMAIL_GID}
first_valid_uid = {VMAIL_UID}
last_valid_uid = {VMAIL_UID}
first_valid_gid = {VMAIL_GID}
last_valid_gid = {VMAIL_GID}
passdb {{
  driver = sql
  args = {self.sql_conf_path}
}}
userdb {{
  driver = sql
  args = {self.sql_conf_path}
}}
service imap-login {{
  inet_listener imap {{
    address = {LOOPBACK}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {LOOPBACK}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {LOOPBACK}
    port = {self.lmtp_port}
  }}
}}
"""

    @property
    def lmtp_socket(self) -> Path:
        """Dovecot's unix LMTP socket (mode 0666)."""
        return self.run_dir / "lmtp"

    def log_files(self) -> list[Path]:
        return [self.log_path, self._output]

    def master_pid(self) -> int | None:
        pid = _read_pid(self.run_dir / "master.pid")
        return pid if pid is not None and pid_alive(pid) else None

    @property
    def running(self) -> bool:
        return self.master_pid() is not None

    def _ports_open(self) -> bool:
        # Greetings, not just open ports: a login process killed before it finished
        # its stats handshake makes the next stop() take 5 s.
        return (
            banner_ok(self.imap_port, b"* OK")
            and banner_ok(self.pop3_port, b"+OK")
            and banner_ok(self.lmtp_port, b"220 ")
        )

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        if self.running:
            return
        _running.add(self)
        with open(self._output, "ab") as out:
            rc = subprocess.run(
                [_bin("dovecot"), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                timeout=60,
                check=False,
            ).returncode
        if rc != 0:
            self._fail(f"'dovecot -c {self.conf_path}' exited with rc={rc}")
        pid_file = self.run_dir / "master.pid"
        self._wait_ready(
            f"dovecot on ports imap={self.imap_port} pop3={self.pop3_port} lmtp={self.lmtp_port}",
            self._ports_open,
            timeout,
            alive=lambda: not pid_file.exists() or self.running,
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        _running.discard(self)
        pid = self.master_pid()
        if pid is not None:
            _stop_daemon(pid, timeout)

    def reload(self, timeout: float = READY_TIMEOUT) -> None:
        """Re-read dovecot.conf (SIGHUP) and wait until the listeners are back."""
        proc = self.doveadm("reload")
        if proc.returncode != 0:
            raise RuntimeError(f"doveadm reload failed: {proc.stdout}{proc.stderr}")
        self._wait_ready("dovecot after reload", self._ports_open, timeout, lambda: self.running)

    def doveadm(
        self, *args: str, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``doveadm -c dovecot.conf ARGS``; never raises on a non-zero exit status."""
        return subprocess.run(
            [_bin("doveadm"), "-c", str(self.conf_path), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


# --------------------------------------------------------------------------- Postfix


def self_signed_cert(directory: Path, name: str = "mx.example.test") -> tuple[Path, Path]:
    """A throw-away certificate and key (openssl) for STARTTLS in a test Postfix."""
    directory.mkdir(mode=0o700, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return cert, key


def _without_mailwarden_block(text: str) -> str:
    """text minus any ``# BEGIN mailwarden`` .. ``# END mailwarden`` block."""
    out: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        if line.startswith("# BEGIN mailwarden"):
            inside = True
        elif line.startswith("# END mailwarden"):
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)


def stock_master_cf(dest: Path) -> None:
    """Copy /etc/postfix/master.cf to dest as the package ships it: without the block
    a ``mailwarden setup --apply`` (the quickstart) may have added on this machine."""
    dest.write_text(_without_mailwarden_block(Path("/etc/postfix/master.cf").read_text()))


def stock_dovecot_dir(dest: Path) -> None:
    """Copy /etc/dovecot to dest without the files ``mailwarden setup`` writes there,
    so tests that run setup against the copy see the machine's stock configuration."""
    shutil.copytree(
        "/etc/dovecot",
        dest,
        symlinks=True,
        ignore=lambda _dir, names: [n for n in names if "mailwarden" in n],
    )


_ETC_MAIN_CF = Path("/etc/postfix/main.cf")
_MAIN_CF_MARKER = (
    "# Written by mailwarden tests/servers.py so that non-root 'sendmail -C DIR' (postdrop)\n"
    "# accepts the test instances' config dirs. Delete freely when no tests run.\n"
)


def _register_postfix_config_dir(config_dir: Path) -> None:
    """List config_dir in alternate_config_directories of /etc/postfix/main.cf.

    Only when that file does not exist, or is the one this module wrote
    (marker line): a real main.cf is never touched.  Stale entries are pruned.
    """
    with _registry_lock():
        dirs: list[str] = []
        if _ETC_MAIN_CF.exists():
            text = _ETC_MAIN_CF.read_text()
            if not text.startswith(_MAIN_CF_MARKER):
                return
            match = re.search(r"^alternate_config_directories\s*=\s*(.*)$", text, re.MULTILINE)
            if match:
                dirs = [d for d in re.split(r"[\s,]+", match.group(1)) if Path(d).is_dir()]
        if str(config_dir) not in dirs:
            dirs.append(str(config_dir))
        _atomic_write(
            _ETC_MAIN_CF, _MAIN_CF_MARKER + f"alternate_config_directories = {', '.join(dirs)}\n"
        )
        _cool_down(_ETC_MAIN_CF)


class Postfix(_Server):
    """Postfix with its own config dir, queue and log, smtpd on a free 127.0.0.1 port.

    No delivery leaves the machine: local/default/relay transports are error:.
    main_cf_extra is applied with ``postconf -e``; master_cf_extra entries
    (complete master.cf entries, continuation lines allowed) replace any
    entry with the same service name and type, or are appended.
    """

    kind = "postfix"
    programs = ("postfix", "postconf", "postmap", "postqueue")
    users = ("postfix",)

    def __init__(
        self,
        base: Path,
        main_cf_extra: Mapping[str, str] | None = None,
        master_cf_extra: Sequence[str] = (),
    ) -> None:
        super().__init__(base)
        self.config_dir = self.dir / "etc"
        self.queue_dir = self.dir / "spool"
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "postfix.log"
        for path in (self.config_dir, self.queue_dir, self.data_dir):
            path.mkdir(mode=0o755)
        _chown(self.data_dir, "postfix")
        self.smtp_port = free_port()
        (self.config_dir / "main.cf").write_text(self._main_cf())
        stock_master_cf(self.config_dir / "master.cf")
        _cool_down(self.config_dir / "main.cf")
        _cool_down(self.config_dir / "master.cf")
        self.postconf("-F", "*/*/chroot = n")  # Debian chroots smtpd etc. into the queue dir
        self.postconf("-MX", "smtp/inet")
        self.postconf("-M", f"{self.smtp_port}/inet={self.smtp_port} inet n - n - - smtpd")
        if main_cf_extra:
            self.postconf("-e", *(f"{k}={v}" for k, v in main_cf_extra.items()))
        for entry in master_cf_extra:
            self.add_master_entry(entry)
        _register_postfix_config_dir(self.config_dir)

    def _main_cf(self) -> str:
        return f"""\
# generated by tests/servers.py
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
maillog_file_prefixes = /var, /dev/stdout, {self.dir}
maillog_file = {self.log_path}
myhostname = mx.example.test
mydomain = example.test
mydestination =
alias_maps =
alias_database =
local_transport = error:5.1.1 local delivery disabled in tests
default_transport = error:5.7.1 outbound delivery disabled in tests
relay_transport = error:5.7.1 outbound delivery disabled in tests
smtp_dns_support_level = disabled
inet_interfaces = {LOOPBACK}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtputf8_enable = no
"""

    def postconf(self, *args: str) -> str:
        """Run ``postconf -c CONFIG_DIR ARGS`` (raises on failure); reload() to apply."""
        out = _run([_bin("postconf"), "-c", self.config_dir, *args])
        for name in ("main.cf", "master.cf"):
            _cool_down(self.config_dir / name)
        return out

    def write_file(self, name: str, text: str, mode: int = 0o640) -> Path:
        """Write a file (map, ``mysql:`` .cf ...) into config_dir, group postfix.

        Its mtime is set into the past: Postfix pauses up to 2 s before
        reading a configuration or table file modified within the last second.
        """
        path = self.config_dir / name
        path.write_text(text)
        shutil.chown(path, group="postfix")
        os.chmod(path, mode)
        _cool_down(path)
        return path

    def add_master_entry(self, entry: str) -> None:
        """Add a master.cf entry, replacing one with the same ``name/type``."""
        fields = entry.split()
        if len(fields) < 8:
            raise ValueError(f"not a master.cf entry: {entry!r}")
        with contextlib.suppress(RuntimeError):
            self.postconf("-MX", f"{fields[0]}/{fields[1]}")
        with open(self.config_dir / "master.cf", "a") as master_cf:
            master_cf.write(entry.rstrip("\n") + "\n")
        _cool_down(self.config_dir / "master.cf")

    def _postfix(self, *args: str) -> str:
        return _run([_bin("postfix"), "-c", self.config_dir, *args])

    def master_pid(self) -> int | None:
        pid = _read_pid(self.queue_dir / "pid" / "master.pid")
        return pid if pid is not None and pid_alive(pid) else None

    @property
    def running(self) -> bool:
        return self.master_pid() is not None

    def log_files(self) -> list[Path]:
        return [self.log_path, self._output]

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        if self.running:
            return
        _running.add(self)
        try:
            self._postfix("check")
            self._postfix("start")
        except RuntimeError as exc:
            self._fail(str(exc))
        self._wait_ready(
            f"postfix smtpd on port {self.smtp_port}",
            lambda: self.running and port_open(self.smtp_port),
            timeout,
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        # Like 'postfix stop' (SIGTERM to master, which stops its children),
        # without its 1 s sleep granularity.
        _running.discard(self)
        pid = self.master_pid()
        if pid is not None:
            _stop_daemon(pid, timeout)

    def reload(self, timeout: float = READY_TIMEOUT) -> None:
        """``postfix reload``, then wait until every process of the old configuration is gone.

        ``postfix reload`` only signals the master. Until the master has handled it, an
        idle smtpd of the old configuration still takes the next connection and serves it
        with the old settings (a replaced milter, say): on a busy machine that window is
        long enough for the next test message. After a reload every child of the master
        exits once it is idle, so the old ones are waited for.
        """
        master = self.master_pid()
        old = set(_children(master)) if master is not None else set()
        self._postfix("reload")
        self._wait_ready(
            "postfix after reload",
            lambda: (
                not old.intersection(_children(self.master_pid() or -1))
                and port_open(self.smtp_port)
            ),
            timeout,
            lambda: self.running,
        )

    def postmap_q(self, key: str, map_spec: str) -> str | None:
        """Look key up in map_spec (e.g. ``mysql:/path.cf``); None if not found.

        Raises RuntimeError on lookup errors (postmap also exits 1 for those,
        but says ``fatal:``).
        """
        proc = subprocess.run(
            [_bin("postmap"), "-c", str(self.config_dir), "-q", key, map_spec],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode == 0:
            return proc.stdout.strip()
        if proc.returncode == 1 and "fatal:" not in proc.stderr:
            return None
        raise RuntimeError(
            f"postmap -q {key!r} {map_spec} failed (rc={proc.returncode}): {proc.stderr.strip()}"
        )

    def log_mark(self) -> int:
        """Current size of the mail log; pass as ``since`` to only look at newer lines."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(since)
                return log.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, regex: str, timeout: float = 10.0, since: int = 0) -> re.Match[str]:
        """Wait until the mail log (from byte offset since) matches regex (re.MULTILINE)."""
        pattern = re.compile(regex, re.MULTILINE)
        found: list[re.Match[str]] = []

        def check() -> bool:
            match = pattern.search(self.log_text(since))
            if match:
                found.append(match)
            return match is not None

        try:
            _poll(check, time.monotonic() + timeout, f"/{regex}/ in {self.log_path}")
        except TimeoutError:
            raise TimeoutError(
                f"no match for /{regex}/ in the postfix log after {timeout}s\n{self.log_tail()}"
            ) from None
        return found[0]

    def flush(self) -> None:
        """Attempt delivery of all queued mail (postqueue -f)."""
        _run([_bin("postqueue"), "-c", self.config_dir, "-f"])

    _QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")

    def queue_ids(self) -> list[str]:
        """Queue ids of all messages in any queue (reads the spool, works while stopped)."""
        ids = []
        for queue in self._QUEUES:
            for _dirpath, _dirs, files in os.walk(self.queue_dir / queue):
                ids.extend(files)
        return sorted(ids)

    def queue_empty(self) -> bool:
        return not self.queue_ids()

    def wait_queue_empty(self, timeout: float = 10.0) -> None:
        try:
            _poll(self.queue_empty, time.monotonic() + timeout, "empty postfix queue")
        except TimeoutError:
            raise TimeoutError(
                f"postfix queue not empty after {timeout}s: {self.queue_ids()}\n{self.log_tail()}"
            ) from None


# --------------------------------------------------------------------------- clamd


def _eicar() -> bytes:
    # Assembled at runtime so this source file itself does not look infected.
    return b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR" + b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class Clamd(_Server):
    """clamd with a single local signature (EICAR, reported as Test.EICAR-Local.UNOFFICIAL).

    Listens on a unix socket (mode 0666, ``socket``) and on 127.0.0.1:``port``.
    """

    kind = "clamd"
    programs = ("clamd",)
    signature_name = "Test.EICAR-Local.UNOFFICIAL"

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.eicar: bytes = _eicar()
        self.port = free_port()
        self.socket = self.dir / "clamd.sock"
        _check_unix_path(self.socket)
        self.db_dir = self.dir / "db"
        self.db_dir.mkdir()
        (self.db_dir / "local.ndb").write_text(f"Test.EICAR-Local:0:*:{self.eicar.hex()}\n")
        self.log_path = self.dir / "clamd.log"
        self.conf_path = self.dir / "clamd.conf"
        self.conf_path.write_text(
            f"DatabaseDirectory {self.db_dir}\n"
            f"LocalSocket {self.socket}\n"
            "LocalSocketMode 666\n"
            "FixStaleSocket yes\n"
            f"TCPSocket {self.port}\n"
            f"TCPAddr {LOOPBACK}\n"
            "Foreground yes\n"
            f"LogFile {self.log_path}\n"
            "LogTime yes\n"
            f"PidFile {self.dir / 'clamd.pid'}\n"
        )

    def log_files(self) -> list[Path]:
        return [self.log_path, self._output]

    @property
    def running(self) -> bool:
        return self._proc_alive()

    def ping(self) -> bool:
        """True if clamd answers PING with PONG on its unix socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2.0)
                sock.connect(str(self.socket))
                sock.sendall(b"zPING\0")
                return sock.recv(64).rstrip(b"\0") == b"PONG"
        except OSError:
            return False

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        if self.running:
            return
        proc = self._spawn([_bin("clamd"), "-c", self.conf_path])
        self._wait_ready(
            f"clamd on {self.socket} and port {self.port}",
            lambda: self.ping() and port_open(self.port),
            timeout,
            alive=lambda: proc.poll() is None,
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self._stop_proc(timeout)


# --------------------------------------------------------------------------- spamd


class Spamd(_Server):
    """spamd with Debian's shipped rules (no sa-update), no network tests, no Bayes."""

    kind = "spamd"
    programs = ("spamd",)
    users = ("debian-spamd",)

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.port = free_port()
        self.log_path = self.dir / "spamd.log"
        self.pid_file = self.dir / "spamd.pid"

    def log_files(self) -> list[Path]:
        return [self.log_path, self._output]

    @property
    def running(self) -> bool:
        return self._proc_alive()

    def ping(self) -> bool:
        """True if spamd answers a SPAMC PING with PONG."""
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=2.0) as sock:
                sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
                reply = b""
                while chunk := sock.recv(256):
                    reply += chunk
        except OSError:
            return False
        return reply.startswith(b"SPAMD/") and b"PONG" in reply

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        if self.running:
            return
        proc = self._spawn(
            [
                _bin("spamd"),
                f"--listen={LOOPBACK}:{self.port}",
                f"--allowed-ips={LOOPBACK}",
                "-L",  # local tests only
                "-x",  # no per-user config
                "-u",
                "debian-spamd",
                "-g",
                "debian-spamd",
                # pin the shipped rules: an empty updates dir left by a failed sa-update would win
                "-C",
                "/usr/share/spamassassin",
                "--cf=use_bayes 0",
                "--cf=bayes_auto_learn 0",
                "--max-children=2",
                "--min-children=1",
                f"--pidfile={self.pid_file}",
                f"--syslog={self.log_path}",
                "--helper-home-dir=/var/lib/spamassassin",
            ]
        )
        self._wait_ready(
            f"spamd PING on port {self.port}",
            self.ping,
            timeout,
            alive=lambda: proc.poll() is None,
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self._stop_proc(timeout)


# --------------------------------------------------------------------------- Exim

_TRUSTED_CONFIGS = Path("/etc/exim4/trusted_configs")


def _register_exim_config(config: Path) -> None:
    """Add config to /etc/exim4/trusted_configs (else: 'exim user lost privilege for -C')."""
    with _registry_lock():
        lines: list[str] = []
        if _TRUSTED_CONFIGS.exists():
            lines = [
                line
                for line in _TRUSTED_CONFIGS.read_text().splitlines()
                if line.strip() and (not line.startswith("/") or Path(line).exists())
            ]
        if str(config) not in lines:
            lines.append(str(config))
        _TRUSTED_CONFIGS.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(_TRUSTED_CONFIGS, "\n".join(lines) + "\n", 0o644)


class Exim(_Server):
    """Exim 4.96 (heavy) unpacked by scripts/install-deps.sh, run with ``-C exim.conf``.

    config_text is the test's configuration; this class prepends the options
    tied to the instance, which config_text must therefore not set again:
    exim_path, spool_directory, log_file_path, pid_file_path, exim_user,
    exim_group, never_users, keep_environment, daemon_smtp_ports,
    local_interfaces, tls_advertise_hosts.
    """

    kind = "exim"
    users = ("Debian-exim",)

    @staticmethod
    def binary() -> Path:
        root = Path(os.environ.get("MAILWARDEN_EXIM_ROOT", str(EXIM_ROOT_DEFAULT)))
        return root / "usr" / "sbin" / "exim4"

    def __init__(self, base: Path, config_text: str) -> None:
        super().__init__(base)
        self.exim = self.binary()
        if not self.exim.is_file():
            raise RuntimeError(f"{self.exim} missing: run scripts/install-deps.sh")
        self.port = free_port()
        self.spool_dir = self.dir / "spool"
        self.log_dir = self.dir / "log"
        for path in (self.spool_dir, self.log_dir):
            path.mkdir()
            _chown(path, "Debian-exim")
        self.config_path = self.dir / "exim.conf"
        self.config_path.write_text(self._preamble() + config_text.rstrip("\n") + "\n")
        os.chmod(self.config_path, 0o644)
        _register_exim_config(self.config_path)

    def _preamble(self) -> str:
        return f"""\
# ---- generated by tests/servers.py; do not set these options again below ----
exim_path = {self.exim}
spool_directory = {self.spool_dir}
log_file_path = {self.log_dir}/%slog
pid_file_path = {self.dir}/exim.pid
exim_user = Debian-exim
exim_group = Debian-exim
never_users =
keep_environment =
daemon_smtp_ports = {self.port}
local_interfaces = {LOOPBACK}
tls_advertise_hosts =
# ---- test configuration ----
"""

    @property
    def mainlog(self) -> Path:
        return self.log_dir / "mainlog"

    @property
    def paniclog(self) -> Path:
        return self.log_dir / "paniclog"

    def log_files(self) -> list[Path]:
        return [self.mainlog, self.paniclog, self.log_dir / "rejectlog", self._output]

    def log_text(self) -> str:
        try:
            return self.mainlog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self._proc_alive()

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``exim -C exim.conf ARGS`` (e.g. -bt, -bP, -Mrm); never raises on exit status."""
        return subprocess.run(
            [str(self.exim), "-C", str(self.config_path), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def bh(self, session_text: str, client_ip: str = LOOPBACK, timeout: float = 60.0) -> str:
        """Fake an SMTP session from client_ip (``-bh``: ACLs run, nothing is delivered).

        Returns stdout and stderr combined (SMTP replies plus Exim's ACL trace).
        """
        if not session_text.endswith("\n"):
            session_text += "\n"
        proc = subprocess.run(
            [str(self.exim), "-C", str(self.config_path), "-bh", client_ip],
            input=session_text,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc.stdout

    def start_daemon(self, timeout: float = READY_TIMEOUT, queue_interval: str = "10s") -> None:
        """Run the SMTP daemon in the foreground (-bdf) with a queue runner."""
        if self.running:
            return
        proc = self._spawn([self.exim, "-C", self.config_path, "-bdf", f"-q{queue_interval}"])
        self._wait_ready(
            f"exim daemon on port {self.port}",
            lambda: port_open(self.port),
            timeout,
            alive=lambda: proc.poll() is None,
        )

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        self.start_daemon(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self._stop_proc(timeout)
