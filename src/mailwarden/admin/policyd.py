"""``mailwarden policyd``: run the policy daemon (see ``mailwarden.policyd.__main__``).

Who calls it: ``admin.cli`` (the parser; the options are ``policyd.options``).
The daemon (asyncio, prometheus_client, the policy engine) is
imported only when the command runs, so ``mailwarden --help`` and the admin commands
never load it. ``--config`` may also follow the subcommand (``cli.Parser``).

Errors: a bad option value is argparse's one line (exit 2); the daemon's own errors are
its one line (exit 1).
"""

from __future__ import annotations

import argparse

from mailwarden.admin.context import Context
from mailwarden.policyd.options import add_arguments


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("policyd", help="run the Postfix/Exim policy service")
    add_arguments(p)
    p.set_defaults(handler=cmd_policyd)


def cmd_policyd(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.policyd.__main__ import run

    return run(ctx.settings, args)  # cli.main loaded --config already
