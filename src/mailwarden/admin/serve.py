"""``mailwarden serve``: run policyd, milter, lmtpd and the API supervised (see
``mailwarden.serve``).

Who calls it: ``admin.cli``. The supervisor (and prometheus_client) is imported only
when the command runs. ``--config`` may also follow the subcommand
(``mailwarden serve --config PATH``); ``--metrics none`` serves no host endpoint.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.args import add_metrics
from mailwarden.admin.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve", help="run policyd, milter, lmtpd and the API supervised, one /metrics"
    )
    add_arguments(p)
    p.set_defaults(handler=cmd_serve)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--foreground", action="store_true", help="do not detach (systemd, containers)")
    p.add_argument(
        "--only", metavar="LIST", help="comma-separated daemons to run (default: all installed)"
    )
    add_metrics(p, "the host's Prometheus /metrics")
    p.add_argument("--log-file", default="/var/log/mailwarden/serve.log", help="log when detached")
    p.add_argument("--pid-file", default="/run/mailwarden/serve.pid", help="pid when detached")
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="SIGKILL daemons still running this long after SIGTERM",
    )
    p.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="first restart delay; doubles per quick exit, up to 60 s",
    )


def cmd_serve(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.serve.main import run

    return run(ctx.settings, args)
