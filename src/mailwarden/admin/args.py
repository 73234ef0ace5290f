"""Argparse helpers shared by the ``mailwarden`` account and policy commands.

Who calls it: the ``register`` functions and handlers of ``admin/<command>.py``. It ties
the pure parsers of ``mailwarden.units`` (sizes, durations, counts, yes/no, dates) to
argparse: the ``mailwarden NAME VERB`` parser every command has, and errors that name
the option a bad value was given for.

The options the daemons share (``--metrics``, ``--workers``) live in
``daemon.options`` (a daemon's own entry must not import ``admin``); they are
re-exported here for the admin modules.

Errors: ``UsageError`` from a parser, prefixed with the option (``--quota: invalid size
'lots': ...``); ``argparse.ArgumentTypeError`` (argparse's one line, exit 2) from the
daemons' option types.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias, TypeVar

from mailwarden.daemon.options import add_metrics, metrics_address, processes
from mailwarden.errors import UsageError

__all__ = ["Subparsers", "add_metrics", "command", "metrics_address", "option_value", "processes"]

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
