"""``mailwarden policyd``: run the policy daemon (see ``mailwarden.policyd.__main__``).

Who calls it: ``admin.cli`` (the parser) and ``python -m mailwarden.policyd``
(``add_arguments``). The daemon (asyncio, prometheus_client, the policy engine) is
imported only when the command runs, so ``mailwarden --help`` and the admin commands
never load it. ``--config`` may also follow the subcommand (``cli.Parser``).

Errors: a bad option value is argparse's one line (exit 2); the daemon's own errors are
its one line (exit 1).
"""

from __future__ import annotations

import argparse

from mailwarden.admin.args import add_metrics, processes
from mailwarden.admin.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("policyd", help="run the Postfix/Exim policy service")
    add_arguments(p)
    p.set_defaults(handler=cmd_policyd)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", action="append", metavar="ADDR", help="HOST:PORT or unix:/path (repeatable)"
    )
    add_metrics(parser)
    parser.add_argument(
        "--workers",
        type=processes,
        default=None,
        metavar="N",
        help="serve from N processes (one CPU each; default [policy] workers, 1)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="'info' logs one line per decision (default)",
    )


def cmd_policyd(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.policyd import __main__ as policyd_main

    return policyd_main.run(ctx.settings, args)  # cli.main loaded --config already
