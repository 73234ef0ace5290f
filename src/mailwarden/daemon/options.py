"""Command-line options every daemon shares: ``--metrics``, ``--workers``, ``--log-level``.

Who calls it: each daemon's ``options`` module (``policyd.options``, ``milter.options``)
and ``admin`` (``admin.args`` re-exports these for the ``mailwarden`` parser), so that
``mailwarden --help`` builds every parser without importing a daemon, and a daemon's
``python -m`` entry never imports ``admin``.

Errors: ``argparse.ArgumentTypeError`` (argparse's one line, exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mailwarden import config
from mailwarden.config import MAX_WORKERS, METRICS_OFF, Settings, is_host_port
from mailwarden.daemon.logging import LEVELS


def processes(text: str) -> int:
    """``--workers N`` of policyd and lmtpd: 1..``config.MAX_WORKERS``, like the
    ``[policy] workers`` / ``[lda] lmtp_workers`` settings it overrides."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"expected a number of processes 1..{MAX_WORKERS}, got {text!r}"
        )
    return int(text)


def metrics_address(text: str) -> str:
    """``--metrics`` of every daemon: ``HOST:PORT``, or ``none`` for off.

    The empty string (the old spelling of off) passes; ``config.metrics_listen`` reports
    it as deprecated when the daemon starts.
    """
    value = text.strip()
    if value in (METRICS_OFF, "") or is_host_port(value):
        return value
    raise argparse.ArgumentTypeError(f"expected HOST:PORT or {METRICS_OFF} (off), got {text!r}")


def add_metrics(parser: argparse.ArgumentParser, what: str = "Prometheus /metrics") -> None:
    """The daemons' ``--metrics HOST:PORT|none`` (default ``[metrics] listen``)."""
    parser.add_argument(
        "--metrics",
        type=metrics_address,
        default=None,
        metavar="HOST:PORT|none",
        help=f"serve {what} here, or {METRICS_OFF} for off (default [metrics] listen)",
    )


def add_workers(parser: argparse.ArgumentParser, default_from: str) -> None:
    parser.add_argument(
        "--workers",
        type=processes,
        default=None,
        metavar="N",
        help=f"serve from N processes (one CPU each; default {default_from}, 1)",
    )


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=LEVELS,
        help="'info' logs one line per decision (default)",
    )


def standalone(
    name: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[Settings, argparse.Namespace], int],
    argv: Sequence[str] | None = None,
) -> int:
    """``python -m mailwarden.NAME``: parse ``--config`` and the daemon's options, load
    the settings, run; a ``MailwardenError`` is one line on stderr and exit 1."""
    from mailwarden.errors import MailwardenError

    parser = argparse.ArgumentParser(prog=f"mailwarden-{name}")
    parser.add_argument("--config", metavar="PATH")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(config.load(args.config), args)
    except MailwardenError as exc:
        print(f"mailwarden {name}: {exc}", file=sys.stderr)
        return 1
