"""``mailwarden milter``: run the scanning milter (see ``mailwarden.milter.__main__``).

``--config`` may also follow the subcommand (``mailwarden milter --config PATH``).
"""

from __future__ import annotations

import argparse

from mailwarden.admin.context import Context
from mailwarden.milter import __main__ as milter_main


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("milter", help="run the Postfix milter (ClamAV, SpamAssassin, traffic)")
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="configuration file")
    milter_main.add_arguments(p)
    p.set_defaults(handler=cmd_milter)


def cmd_milter(ctx: Context, args: argparse.Namespace) -> int:
    return milter_main.run(ctx.settings, args)  # cli.main loaded --config already
