"""mailwarden daemons as subprocesses for the integration tests: start, wait, stop.

``start_daemon(kind, config, listen, log_path)`` runs ``lmtpd``, ``policyd`` or
``milter`` from this checkout (``PYTHONPATH=src``) in its own session, with stdout and
stderr appended to ``log_path``, and returns once ``listen`` accepts connections — or
raises ``RuntimeError`` with the end of the log when the process exits or the deadline
passes first (the process is killed then). ``Daemon.stop()`` sends SIGTERM, waits, and
SIGKILLs what is left; it returns the exit status.

``listen`` is what the daemon's ``--listen`` takes: ``unix:/path``, ``HOST:PORT`` or
libmilter's ``inet:PORT@HOST``; readiness is probed on the same address.

Without ``--metrics`` in ``args`` the daemon gets ``--metrics none``: its default,
``[metrics] listen`` = 127.0.0.1:9190, is the port the quickstart's ``mailwarden serve``
holds, and a daemon that cannot bind it dies (``Address already in use``). A test that
reads metrics passes ``--metrics 127.0.0.1:<free port>``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests import servers

SRC = Path(__file__).resolve().parents[1] / "src"

Kind = Literal["lmtpd", "policyd", "milter"]

# The module each kind runs and the arguments before ``--config``.
_COMMANDS: dict[str, tuple[str, ...]] = {
    "lmtpd": ("-m", "mailwarden"),
    "policyd": ("-m", "mailwarden.policyd"),
    "milter": ("-m", "mailwarden.milter"),
}


def listen_ready(listen: str) -> bool:
    """True when the address the daemon was told to listen on accepts connections."""
    if listen.startswith("unix:"):
        return servers.unix_socket_open(listen[5:])
    if listen.startswith("inet:") and "@" in listen:  # libmilter's inet:PORT@HOST
        port, _, host = listen[5:].partition("@")
        return servers.port_open(int(port), host)
    host, _, port = listen.rpartition(":")
    return servers.port_open(int(port), host.strip("[]") or servers.LOOPBACK)


@dataclass
class Daemon:
    """One running daemon (``start_daemon`` builds it)."""

    kind: str
    listen: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(5)


def start_daemon(
    kind: Kind,
    config: Path,
    listen: str,
    log_path: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Daemon:
    """Start ``mailwarden <kind> --listen <listen> <args>`` and wait until it listens."""
    command = [sys.executable, *_COMMANDS[kind], "--config", str(config)]
    if kind == "lmtpd":
        command.append("lmtpd")
    command += ["--listen", listen, *args]
    if "--metrics" not in args:
        command += ["--metrics", "none"]  # never the machine's 127.0.0.1:9190
    environ = dict(os.environ, PYTHONPATH=str(SRC), **(env or {}))
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            command, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    daemon = Daemon(kind, listen, log_path, proc)
    deadline = time.monotonic() + timeout
    while not listen_ready(listen):
        if proc.poll() is not None or time.monotonic() > deadline:
            daemon.stop(timeout=0)
            raise RuntimeError(f"{kind} did not start on {listen}:\n{daemon.log_tail()}")
        time.sleep(0.05)
    return daemon


def mail_dirs(base: Path) -> tuple[Path, Path, str]:
    """A vmail-owned mail root and database directory under ``base``.

    Returns (mail root, SQLite file path, its database URL): the layout the full-stack
    tests share (Dovecot, lmtpd and the pipe LDA all reach both as the mail user).
    """
    root, dbdir = base / "vmail", base / "db"
    for d in (root, dbdir):
        d.mkdir()
        os.chown(d, servers.VMAIL_UID, servers.VMAIL_GID)
    db = dbdir / "mail.sqlite"
    return root, db, f"sqlite:///{db}"
