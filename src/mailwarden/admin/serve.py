"""``mailwarden serve``: run policyd, milter and lmtpd supervised (see ``mailwarden.serve``).

``--config`` may also follow the subcommand (``mailwarden serve --config PATH``).
"""

from __future__ import annotations

import argparse

from mailwarden.admin.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from mailwarden.serve.main import add_arguments

    p = sub.add_parser("serve", help="run policyd, milter and lmtpd supervised, one /metrics")
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="configuration file")
    add_arguments(p)
    p.set_defaults(handler=cmd_serve)


def cmd_serve(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.serve.main import run

    return run(ctx.settings, args)
