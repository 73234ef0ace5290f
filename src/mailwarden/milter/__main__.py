"""``mailwarden milter``: wire the scanning milter together and run it until SIGTERM.

Usage: ``mailwarden milter [--config PATH] [--listen ADDR] [--metrics HOST:PORT|none]
[--log-level LEVEL]`` (options and ``check_settings`` in ``milter.options``; ``admin.milter``
imports this module only when the milter runs), or ``python -m mailwarden.milter`` with
the same options. ``ADDR``: any spelling of ``daemon.listen`` (libmilter's
``inet:PORT@HOST``, ``unix:/path``, ``HOST:PORT`` ...), converted to libmilter's.
libmilter serves one socket per process: give one address.

Wiring (the only module naming concrete classes): settings loaded once; a clamd client
unless ``milter.clamd`` is empty, a spamd client unless ``milter.spamd`` is empty; the
database for allow lists and traffic (optional: when it cannot be opened, allow lists
are not consulted and traffic is not counted, and mail still flows); Prometheus metrics
on their own registry. A unix socket gets ``milter.socket_mode`` (default 0666) through
the umask while libmilter creates it — Postfix's smtpd runs as user ``postfix``.

Readiness: ``daemon.readiness.ready`` (the log line ``milter: listening on ADDR`` and
sd_notify READY=1) once libmilter has opened its socket. SIGTERM/SIGINT: libmilter
stops accepting, finishes the connections (about 4 s). No SIGHUP reload: libmilter owns
the signals of this process (its signal thread stops the milter on SIGHUP as on
SIGTERM), and the scanner clients are built once; restart the milter to change them.

Errors: a config or listen problem exits 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

import Milter
from prometheus_client import CollectorRegistry

from mailwarden import accounting, config
from mailwarden.config import Settings
from mailwarden.daemon import listen as listening
from mailwarden.daemon import logging as daemon_logging
from mailwarden.daemon import readiness
from mailwarden.daemon.listen import ListenError
from mailwarden.daemon.logging import lifecycle
from mailwarden.daemon.metrics import serve_http
from mailwarden.errors import ConfigError, MailwardenError
from mailwarden.metrics import MilterMetrics
from mailwarden.milter.app import FLAGS, ScanMilter, Scanner
from mailwarden.milter.clamav import ClamdClient
from mailwarden.milter.options import add_arguments, check_settings
from mailwarden.milter.ratelimit import RateRefund
from mailwarden.milter.spamassassin import SpamdClient
from mailwarden.store.db import Database

log = logging.getLogger("mailwarden.milter")
VERDICTS = ("clean", "spam", "virus", "loop", "tempfail", "unscanned", "allowed")


def libmilter_address(text: str) -> str:
    """Any ``daemon.listen`` spelling as libmilter's ``unix:/p`` / ``inet:PORT@HOST``."""
    return listening.parse(text).libmilter


def build_scanner(settings: Settings, metrics: MilterMetrics) -> Scanner:
    s = settings.milter
    clamd = ClamdClient(s.clamd, s.scanner_timeout) if s.clamd else None
    spamd = SpamdClient(s.spamd, s.scanner_timeout) if s.spamd else None
    db: Database | None = None
    try:
        db = Database(settings.database.url, connect_timeout=settings.database.connect_timeout)
    except MailwardenError as exc:
        log.warning("milter: no database (%s): allow lists and traffic off", exc)
    # policyd counts at END-OF-MESSAGE, before Postfix asks the milter: what we refuse
    # is taken back out (milter.ratelimit), when policyd's rate limits are in use.
    rates = None
    if db is not None and "ratelimit" in settings.policy.checks:
        rates = RateRefund(db, settings.mail.recipient_delimiter)
    counting = accounting.counts(settings.traffic.counter, accounting.MILTER)
    return Scanner(s, metrics, db=db, clamd=clamd, spamd=spamd, rates=rates, count_traffic=counting)


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        daemon_logging.setup("milter", str(args.log_level))
        mode = check_settings(settings.milter, settings.source)
        listen = list(args.listen or settings.milter.listen)
        if len(listen) != 1:
            raise ConfigError("libmilter serves one socket per process: give one --listen")
        address = libmilter_address(listen[0])
    except ConfigError as exc:
        print(f"mailwarden milter: {exc}", file=sys.stderr)
        return 1
    registry = CollectorRegistry()
    metrics = MilterMetrics.create(registry)
    for verdict in VERDICTS:
        metrics.messages.labels(verdict)
    for scanner_name in ("clamav", "spamassassin"):
        metrics.scanner_errors.labels(scanner_name)
    for direction in ("in", "out"):
        metrics.traffic_messages.labels(direction)
        metrics.traffic_bytes.labels(direction)
    _serve_metrics(config.metrics_listen(args.metrics, settings, "mailwarden milter"), registry)
    scanner = build_scanner(settings, metrics)
    return serve(scanner, address, mode)


def serve(scanner: Scanner, address: str, mode: int) -> int:
    """Run libmilter until SIGTERM."""
    Milter.factory = lambda: ScanMilter(scanner, answer_data=not address.startswith("unix:"))
    Milter.set_flags(FLAGS)
    Milter.set_exception_policy(Milter.TEMPFAIL)
    old = os.umask(0o777 & ~mode) if address.startswith("unix:") else None
    opensocket = Milter.milter.opensocket
    if address.startswith(("inet:", "inet6:")):
        Milter.milter.opensocket = _nodelay_after(opensocket, address)
    Milter.milter.opensocket = _ready_after(Milter.milter.opensocket, address)
    try:
        Milter.runmilter("mailwarden", address, timeout=600)
    finally:
        Milter.milter.opensocket = opensocket
        if old is not None:
            os.umask(old)
        scanner.shutdown()
    lifecycle.info("milter: stopped")
    return 0


def _ready_after(opensocket: Callable[[bool], Any], address: str) -> Callable[[bool], Any]:
    """Wrap libmilter's ``opensocket``: readiness once the socket is open."""

    def wrapper(rmsock: bool) -> Any:
        result = opensocket(rmsock)
        readiness.ready("milter", [address])
        return result

    return wrapper


def _nodelay_after(opensocket: Callable[[bool], Any], address: str) -> Callable[[bool], Any]:
    """Wrap libmilter's ``opensocket``: set TCP_NODELAY on the listening socket it made.

    libmilter writes each reply of end-of-message (added/changed headers, then the
    verdict) as a separate small packet and does not disable Nagle's algorithm, so on
    TCP the last packet waited for the MTA's delayed ACK: 40 ms per message, the main
    cost of a milter on loopback (docs/benchmarks.md). Linux copies TCP_NODELAY
    from the listening socket to every accepted one, so setting it once is enough.
    """
    port = int(address.split(":", 1)[1].split("@", 1)[0])

    def wrapper(rmsock: bool) -> Any:
        result = opensocket(rmsock)
        if not set_listener_nodelay(port):
            log.warning("milter: TCP_NODELAY not set (listening socket not found)")
        return result

    return wrapper


def set_listener_nodelay(port: int) -> bool:
    """Set TCP_NODELAY on this process's TCP socket listening on ``port``."""
    found = False
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue  # not a socket (or already closed)
        try:
            if (
                sock.family in (socket.AF_INET, socket.AF_INET6)
                and sock.type == socket.SOCK_STREAM
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                and sock.getsockname()[1] == port
            ):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                found = True
        except OSError:
            pass
        finally:
            sock.detach()  # the fd stays libmilter's
    return found


def _serve_metrics(listen: str | None, registry: CollectorRegistry) -> None:
    if listen is None:  # metrics off
        return
    try:
        serve_http(listen, registry)
    except ListenError as exc:
        log.warning("milter: metrics endpoint not started: %s", exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailwarden-milter")
    parser.add_argument("--config", metavar="PATH")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = config.load(args.config)
    except ConfigError as exc:
        print(f"mailwarden milter: {exc}", file=sys.stderr)
        return 1
    return run(settings, args)


if __name__ == "__main__":
    sys.exit(main())
