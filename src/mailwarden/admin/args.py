"""Argparse helpers shared by the ``mailwarden`` account and policy commands.

Who calls it: the ``register`` functions and handlers of ``admin/<command>.py``. It ties
the pure parsers of ``mailwarden.units`` (sizes, durations, counts, yes/no, dates) to
argparse: the ``mailwarden NAME VERB`` parser every command has, and errors that name
the option a bad value was given for.

It also holds the options the daemons share (``--metrics``, ``--workers``), so that
``mailwarden --help`` builds every parser without importing a daemon.

Errors: ``UsageError`` from a parser, prefixed with the option (``--quota: invalid size
'lots': ...``); ``argparse.ArgumentTypeError`` (argparse's one line, exit 2) from the
daemons' option types.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias, TypeVar

from mailwarden.config import MAX_WORKERS, METRICS_OFF, is_host_port
from mailwarden.errors import UsageError

T = TypeVar("T")
# A string: ``_SubParsersAction`` cannot be subscripted at run time.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def command(sub: Subparsers, name: str, help_text: str) -> Subparsers:
    """Add ``mailwarden NAME VERB ...``: the parser of NAME, whose VERB is required."""
    parser = sub.add_parser(name, help=help_text)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    return verbs


def option_value(parse: Callable[[str], T], text: str, option: str) -> T:
    """``parse(text)``, a ``UsageError`` prefixed with ``option``."""
    try:
        return parse(text)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc}") from None


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
