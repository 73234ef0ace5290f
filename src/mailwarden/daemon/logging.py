"""One logging set-up for every daemon: format, level, stderr or syslog.

Who calls it: each daemon's ``__main__``/``main`` once, before anything logs; the
reload signal (``readiness.on_reload``) calls ``set_level`` again.

Format, Postfix's: ``TIME mailwarden-NAME[PID]: message`` on stderr, the level named
only when it is not INFO (``...: warning: ...``, ``error:``, ``debug:``); to syslog's
``mail`` facility (``/dev/log``, without the time) when ``syslog`` is true — where
Postfix and Dovecot log, so one ``grep`` follows a message through all three. One line
per decision is logged at INFO; start, readiness, workers and stop go to the
``mailwarden.lifecycle`` logger (``lifecycle``), kept at INFO whatever the level, so
they show at every level without being called warnings.

Errors: an unknown level name is a ``ConfigError`` (one line).
"""

from __future__ import annotations

import logging
import os
import sys

from mailwarden.errors import ConfigError

LEVELS = ("debug", "info", "warning", "error")
SYSLOG_SOCKET = "/dev/log"
lifecycle = logging.getLogger("mailwarden.lifecycle")


def level_of(name: str) -> int:
    """``info`` / ``INFO`` -> ``logging.INFO``; ``ConfigError`` for anything else."""
    if str(name).lower() not in LEVELS:
        raise ConfigError(f"log level {name!r}: expected one of {', '.join(LEVELS)}")
    level: int = getattr(logging, str(name).upper())
    return level


class _Formatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        if record.levelno == logging.INFO:
            return text.replace("\x00", "", 1)
        return text.replace("\x00", f"{record.levelname.lower()}: ", 1)


def setup(name: str, level: str = "info", *, syslog: bool = False) -> None:
    """Configure the root logger for the daemon ``name`` (``policyd``, ``lmtpd`` ...)."""
    handler: logging.Handler
    if syslog and os.path.exists(SYSLOG_SOCKET):
        # Only here: daemon.options (so this module) is imported by ``mailwarden --help``.
        from logging.handlers import SysLogHandler

        handler = SysLogHandler(SYSLOG_SOCKET, facility=SysLogHandler.LOG_MAIL)
        fmt = f"mailwarden-{name}[%(process)d]: \x00%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = f"%(asctime)s mailwarden-{name}[%(process)d]: \x00%(message)s"
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_of(level))
    lifecycle.setLevel(logging.INFO)


def set_level(level: str) -> None:
    """Change the level of a running daemon (SIGHUP reload)."""
    logging.getLogger().setLevel(level_of(level))
