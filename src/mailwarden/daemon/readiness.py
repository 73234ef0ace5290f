"""Readiness and reload: tell the service manager "ready", re-read the config on SIGHUP.

Who calls it: each daemon once its sockets are bound (``ready``), and a daemon that
supports reload (``on_reload``).

Readiness (``ready``): one log line ``NAME: listening on ADDR, ...`` (on
``daemon.logging.lifecycle``: tests and operators wait for it, or for the socket to
accept) and, when systemd started us with
``Type=notify`` (``$NOTIFY_SOCKET`` set), ``READY=1`` on that datagram socket, as
``sd_notify(3)`` does; ``stopping`` sends ``STOPPING=1``. Without ``$NOTIFY_SOCKET``
nothing is sent; a failed send is logged and ignored (never fatal: the daemon works).

Reload (``on_reload``): SIGHUP calls the daemon's reload function in the event loop.
What a daemon reloads is said in its ``__main__``; the rule is that only what can change
between two requests without tearing anything down is reloaded (log level, check list,
cache TTL). Listen addresses, worker counts, the database URL and the metrics address
are not: they are bound or opened once, and the service manager restarts for those.
Errors: ``ConfigError`` during a reload is logged and the old settings stay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable, Sequence

from mailwarden.daemon.logging import lifecycle
from mailwarden.errors import ConfigError

log = logging.getLogger("mailwarden.daemon")


def notify(state: str) -> bool:
    """Send ``state`` (``READY=1`` ...) to ``$NOTIFY_SOCKET``; False if there is none."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify %s: %s", state, exc)
        return False
    return True


def ready(name: str, listen: Sequence[object], extra: str = "") -> None:
    """The readiness line and ``READY=1``: call once every socket is bound."""
    where = ", ".join(str(a) for a in listen) or "nothing"
    lifecycle.info("%s: listening on %s%s", name, where, f" ({extra})" if extra else "")
    notify(f"READY=1\nMAINPID={os.getpid()}")


def stopping() -> None:
    notify("STOPPING=1")


def no_reload(name: str) -> None:
    """For a daemon with nothing to reload: SIGHUP is logged, not fatal (its default)."""

    def handler() -> None:
        lifecycle.info("%s: SIGHUP: nothing is reloaded here; restart to apply changes", name)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, handler)


def on_reload(reload: Callable[[], None], name: str) -> None:
    """Run ``reload`` on SIGHUP in the running event loop; its ConfigError is logged."""

    def handler() -> None:
        notify("RELOADING=1")
        try:
            reload()
            lifecycle.info("%s: configuration reloaded", name)
        except ConfigError as exc:
            log.error("%s: reload refused, old settings kept: %s", name, exc)
        notify("READY=1")

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, handler)
