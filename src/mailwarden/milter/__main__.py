"""``mailwarden milter``: wire the scanning milter together and run it until SIGTERM.

Usage: ``mailwarden milter [--config PATH] [--listen ADDR] [--metrics HOST:PORT|none]
[--log-level LEVEL]`` (options defined in ``admin.milter``, which imports this module
only when the milter runs), or ``python -m mailwarden.milter`` with the same options.
``ADDR`` is libmilter's ``inet:PORT@HOST`` / ``unix:/path``, or
``HOST:PORT`` (converted). libmilter serves one socket per process: give one address.

Wiring (the only module naming concrete classes): settings loaded once; a clamd client
unless ``milter.clamd`` is empty, a spamd client unless ``milter.spamd`` is empty; the
database for allow lists and traffic (optional: when it cannot be opened, allow lists
are not consulted and traffic is not counted, and mail still flows); Prometheus metrics
on their own registry. A unix socket gets ``milter.socket_mode`` (default 0666) through
the umask while libmilter creates it — Postfix's smtpd runs as user ``postfix``.

Readiness: the log line ``milter: listening on ADDR`` just before libmilter binds.
SIGTERM/SIGINT: libmilter stops accepting, finishes the connections (about 4 s).

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
from prometheus_client import CollectorRegistry, start_http_server

from mailwarden import config
from mailwarden.admin.milter import add_arguments
from mailwarden.config import MilterSettings, Settings
from mailwarden.errors import ConfigError, MailwardenError
from mailwarden.metrics import MilterMetrics
from mailwarden.milter.app import FLAGS, ScanMilter, Scanner
from mailwarden.milter.clamav import ClamdClient
from mailwarden.milter.ratelimit import RateRefund
from mailwarden.milter.spamassassin import SpamdClient
from mailwarden.store.db import Database

log = logging.getLogger("mailwarden.milter")
VERDICTS = ("clean", "spam", "virus", "loop", "tempfail", "unscanned", "allowed")


def libmilter_address(text: str) -> str:
    """Normalise ``unix:/p``, ``local:/p``, ``inet:PORT@HOST``, ``inet6:..`` or ``HOST:PORT``."""
    value = text.strip()
    if value.startswith(("unix:", "local:")):
        path = value.split(":", 1)[1]
        if not os.path.isabs(path):
            raise ConfigError(f"listen address {text!r}: unix socket path must be absolute")
        return "unix:" + path
    if value.startswith(("inet:", "inet6:")) and "@" in value:
        port = value.split(":", 1)[1].split("@", 1)[0]
        if port.isdigit() and 0 < int(port) < 65536:
            return value
    host, sep, port = value.removeprefix("inet:").rpartition(":")
    if sep and host and port.isdigit() and 0 < int(port) < 65536:
        host = host.strip("[]")
        return f"inet6:{port}@{host}" if ":" in host else f"inet:{port}@{host}"
    raise ConfigError(f"listen address {text!r}: expected unix:/path, inet:PORT@HOST or HOST:PORT")


def check_settings(s: MilterSettings, source: str) -> int:
    """Validate what config.py cannot; return the unix socket mode."""
    if s.clamd_oversize not in ("accept", "tempfail"):
        raise ConfigError(f"{source}: milter.clamd_oversize must be one of accept, tempfail")
    try:
        mode = int(s.socket_mode, 8)
    except ValueError:
        raise ConfigError(f"{source}: milter.socket_mode must be octal like 0660") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"{source}: milter.socket_mode must be 0000..0777")
    for name in ("clamd", "spamd"):
        address = getattr(s, name)
        try:
            if address:
                ClamdClient(address)
        except ValueError as exc:
            raise ConfigError(f"{source}: milter.{name}: {exc}") from None
    if s.spool_threshold < 0 or s.scanner_timeout <= 0:
        raise ConfigError(f"{source}: milter.spool_threshold/scanner_timeout out of range")
    return mode


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
    return Scanner(s, metrics, db=db, clamd=clamd, spamd=spamd, rates=rates)


def run(settings: Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
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
    Milter.factory = lambda: ScanMilter(scanner)
    Milter.set_flags(FLAGS)
    Milter.set_exception_policy(Milter.TEMPFAIL)
    log.info("milter: listening on %s", address)
    old = os.umask(0o777 & ~mode) if address.startswith("unix:") else None
    opensocket = Milter.milter.opensocket
    if address.startswith(("inet:", "inet6:")):
        Milter.milter.opensocket = _nodelay_after(opensocket, address)
    try:
        Milter.runmilter("mailwarden", address, timeout=600)
    finally:
        Milter.milter.opensocket = opensocket
        if old is not None:
            os.umask(old)
        scanner.shutdown()
    log.info("milter: stopped")
    return 0


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
    host, _, port = listen.rpartition(":")
    try:
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
    except (OSError, ValueError) as exc:
        log.warning("milter: metrics endpoint %s not started: %s", listen, exc)


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
