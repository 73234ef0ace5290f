"""Argparse helpers shared by the ``mailwarden`` account and policy commands.

Who calls it: the ``register`` functions and handlers of ``admin/<command>.py``. It ties
the pure parsers of ``mailwarden.units`` (sizes, durations, counts, yes/no, dates) to
argparse: the ``mailwarden NAME VERB`` parser every command has, and errors that name
the option a bad value was given for.

Errors: ``UsageError`` from a parser, prefixed with the option (``--quota: invalid size
'lots': ...``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias, TypeVar

from mailwarden.config import MAX_WORKERS
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
