"""``mailwarden policyd``: run the policy daemon (see ``mailwarden.policyd.__main__``).

``--config`` may also follow the subcommand (``mailwarden policyd --config PATH``).
"""

from __future__ import annotations

import argparse

from mailwarden.admin.context import Context
from mailwarden.policyd import __main__ as policyd_main


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("policyd", help="run the Postfix/Exim policy service")
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="configuration file")
    policyd_main.add_arguments(p)
    p.set_defaults(handler=cmd_policyd)


def cmd_policyd(ctx: Context, args: argparse.Namespace) -> int:
    return policyd_main.run(ctx.settings, args)  # cli.main loaded --config already
