"""``mailwarden milter``: run the scanning milter (see ``mailwarden.milter.__main__``).

Who calls it: ``admin.cli`` (the parser; the options are ``milter.options``).
pymilter (``Milter``) and prometheus_client are imported only when
the command runs, so ``mailwarden --help`` and the admin commands work, and never load
them, even where pymilter is missing. ``--config`` may also follow the subcommand.

Errors: pymilter not importable is one line naming what to install (exit 1); the
daemon's own errors are its one line.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.context import Context
from mailwarden.errors import ConfigError
from mailwarden.milter.options import add_arguments

NO_PYMILTER = (
    "pymilter is not installed: pip install pymilter "
    "(it builds against libmilter: apt-get install libmilter-dev first)"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("milter", help="run the Postfix milter (ClamAV, SpamAssassin, traffic)")
    add_arguments(p)
    p.set_defaults(handler=cmd_milter)


def cmd_milter(ctx: Context, args: argparse.Namespace) -> int:
    try:
        from mailwarden.milter.__main__ import run
    except ModuleNotFoundError as exc:
        if exc.name == "Milter":
            raise ConfigError(NO_PYMILTER) from None
        raise
    return run(ctx.settings, args)  # cli.main loaded --config already
