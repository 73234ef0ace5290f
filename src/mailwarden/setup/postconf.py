"""Small questions to Postfix's own ``postconf`` for setup: where the queue directory is.

Who calls it: ``setup.answers`` (socket defaults below the queue directory),
``setup.targets``/``plan``/``preflight`` and ``doctor``. Kept apart from ``targets`` so
``answers`` need not import ``targets`` (which imports ``answers``).

Errors: ``ConfigError`` with postconf's last stderr line when postconf fails.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from mailwarden import config
from mailwarden.errors import ConfigError


def queue_directory(postfix_dir: str) -> str:
    """Postfix's ``queue_directory`` for that config directory (Dovecot puts the SASL
    socket below it); the Debian default when there is no main.cf yet."""
    if not (Path(postfix_dir) / "main.cf").exists() or not shutil.which("postconf"):
        return "/var/spool/postfix"
    return postconf(postfix_dir, "-h", "queue_directory").strip() or "/var/spool/postfix"


def in_queue(spec: str, queue_dir: str) -> str:
    """A default socket address (``config.LMTP_SOCKET``...) below this Postfix's queue
    directory instead of Debian's /var/spool/postfix."""
    return spec.replace(config.POSTFIX_QUEUE + "/", queue_dir.rstrip("/") + "/", 1)


def postconf(postfix_dir: str, *args: str) -> str:
    proc = subprocess.run(
        ["postconf", "-c", postfix_dir, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        line = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise ConfigError(f"postconf -c {postfix_dir}: {line}")
    return proc.stdout
