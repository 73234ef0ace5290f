"""Checks that run before setup changes anything; each failure is one ConfigError line."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
from pathlib import Path

from mailwarden.errors import ConfigError, MailwardenError
from mailwarden.setup import postconf, targets
from mailwarden.setup.answers import Answers
from mailwarden.store.db import Database, parse_url

DOVECOT_MODULES = Path("/usr/lib/dovecot/modules")


def run_all(a: Answers) -> None:
    dialect = parse_url(a.database_url).dialect
    postfix(a.postfix_dir, dialect)
    dovecot(a.dovecot_dir, dialect)
    database(a.database_url)
    mail_root(a.mail_root)
    ports(a)
    sockets(a)


def _have(program: str) -> bool:
    return shutil.which(program) is not None


def postfix(postfix_dir: str, dialect: str) -> None:
    if not (_have("postconf") and _have("postfix")):
        raise ConfigError(f"Postfix is not installed: apt-get install postfix postfix-{dialect}")
    if not Path(postfix_dir).is_dir():
        raise ConfigError(f"--postfix-dir {postfix_dir} is not a directory (Postfix not set up?)")
    main_cf = Path(postfix_dir) / "main.cf"
    if not main_cf.is_file():
        raise ConfigError(
            f"{main_cf} does not exist: Postfix has no base configuration "
            "(dpkg-reconfigure postfix, choose 'Internet Site'), then run setup again"
        )
    check = subprocess.run(
        ["postconf", "-c", postfix_dir, "-n"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check.returncode != 0:
        fatal = [ln for ln in check.stderr.splitlines() if "fatal:" in ln] or [
            check.stderr.strip() or f"postconf exit {check.returncode}"
        ]
        why = fatal[-1].split("fatal:", 1)[-1].strip()
        raise ConfigError(f"{main_cf} is broken, fix it first: {why}")
    maps = subprocess.run(
        ["postconf", "-m"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.split()
    if dialect not in maps:
        raise ConfigError(
            f"Postfix has no {dialect} map support: apt-get install postfix-{dialect}"
        )


def dovecot(dovecot_dir: str, dialect: str) -> None:
    packages = f"dovecot-core dovecot-imapd dovecot-pop3d dovecot-{dialect}"
    if not (_have("dovecot") and _have("doveadm")):
        raise ConfigError(f"Dovecot is not installed: apt-get install {packages}")
    if not Path(dovecot_dir).is_dir():
        raise ConfigError(f"--dovecot-dir {dovecot_dir} is not a directory (Dovecot not set up?)")
    version = targets.dovecot_version()
    series = targets.dovecot_series(version)
    if series not in targets.SUPPORTED_DOVECOT:
        raise ConfigError(
            f"Dovecot {version or '(dovecot --version gave no answer)'} is not supported: "
            "mailwarden setup writes configuration for Dovecot 2.3 (Debian 12) and 2.4 (Debian 13)"
        )
    if (series == "2.4") != targets.has_config_version(dovecot_dir):
        kind = "2.4" if series == "2.3" else "2.3"
        raise ConfigError(
            f"{dovecot_dir}/dovecot.conf is a Dovecot {kind} configuration but Dovecot "
            f"{version} is installed: restore the dovecot.conf the package ships"
        )
    driver = DOVECOT_MODULES / f"libdriver_{dialect}.so"
    if DOVECOT_MODULES.is_dir() and not driver.exists():
        raise ConfigError(f"Dovecot has no {dialect} driver: apt-get install dovecot-{dialect}")


def database(url: str) -> None:
    """Connect once (MySQL: wrong password, unknown database ...)."""
    parsed = parse_url(url)
    if parsed.dialect == "sqlite":
        if os.path.exists(parsed.path):
            _select_one(url)
            _sqlite_writable(parsed.path)
        else:
            _creatable(os.path.dirname(parsed.path), "database directory")
        return
    _select_one(url)


def _select_one(url: str) -> None:
    db = Database(url, connect_timeout=5.0)
    try:
        db.ping()
    except MailwardenError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        db.close()


def _sqlite_writable(path: str) -> None:
    """Setup writes the schema and accounts: a write that is rolled back must succeed
    (a read-only file, directory or file system, an immutable file ...)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10, isolation_level=None)
    except sqlite3.Error as exc:
        raise ConfigError(f"database {path} cannot be opened for writing: {exc}") from None
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE mailwarden_setup_probe (x INTEGER)")
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise ConfigError(f"database {path} is not writable: {exc}") from None
    finally:
        conn.close()


def _creatable(path: str, what: str) -> None:
    """The nearest existing ancestor must be a writable directory on a writable fs."""
    probe = Path(path)
    while not probe.exists():
        if probe.is_symlink():
            raise ConfigError(f"{what} {path}: {probe} is a dangling symlink")
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{what} {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK) or os.statvfs(probe).f_flag & os.ST_RDONLY:
        raise ConfigError(f"{what} {path}: {probe} is not writable")


def mail_root(path: str) -> None:
    _creatable(path, "mail root")
    if os.path.isdir(path):
        try:
            probe = Path(path) / f".mailwarden-setup-{os.getpid()}"
            probe.mkdir()
            probe.rmdir()
        except OSError as exc:
            raise ConfigError(f"mail root {path} is not writable: {exc.strerror}") from None


def _tcp(spec: str) -> tuple[str, int] | None:
    value = spec.strip()
    if value.startswith(("unix:", "local:", "/")) or value in ("none", ""):  # none: metrics off
        return None
    if value.startswith("inet:") and "@" in value:
        port, _, host = value[5:].partition("@")
        return host or "127.0.0.1", int(port)
    host, sep, port = value.removeprefix("inet:").rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen address {spec!r}: expected HOST:PORT or unix:/path")
    return host.strip("[]"), int(port)


def ports(a: Answers) -> None:
    """New TCP listen addresses must be free (ones the config already had are ours)."""
    old = a.existing
    before: set[str] = set()
    if old is not None:
        before = {*old.policy.listen, *old.milter.listen, *old.lda.lmtp_listen, old.metrics.listen}
    wanted = {
        "policy": a.policy_listen,
        "milter": a.milter_listen,
        "lmtp": a.lmtp_listen,
        "metrics": a.metrics_listen,
    }
    for what, spec in wanted.items():
        where = _tcp(spec)
        if where is None or spec in before:
            continue
        with socket.socket(socket.AF_INET6 if ":" in where[0] else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(where)
            except OSError as exc:
                raise ConfigError(
                    f"{what} port {where[0]}:{where[1]} is in use ({exc.strerror}): "
                    f"stop what listens there or give --{what}-listen"
                ) from None


def sockets(a: Answers) -> None:
    """lmtpd's and the milter's unix sockets: an absolute path, and group postfix for the
    directories setup keeps below the queue directory (``targets.socket_dirs``)."""
    for what, spec in (("lmtp", a.lmtp_listen), ("milter", a.milter_listen)):
        if spec.startswith(("unix:", "local:")) and not os.path.isabs(spec.split(":", 1)[1]):
            raise ConfigError(f"--{what}-listen {spec!r}: the socket path must be absolute")
    targets.socket_dirs(a, postconf.queue_directory(a.postfix_dir))
