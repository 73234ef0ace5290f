"""Daemon and delivery subcommands: ``mailwarden lmtpd``, ``mailwarden deliver``.

Each entry of ``DAEMONS`` adds one subcommand; its handler imports the daemon lazily,
so ``mailwarden --help`` and the admin commands never load asyncio or prometheus.
``--config`` may follow the subcommand (``mailwarden lmtpd --config PATH``: ``cli.Parser``).

``lmtpd``    the LMTP delivery server (``lda.lmtp``)
``deliver``  deliver one message from stdin, like ``mailwarden-lda`` (``lda.pipe``)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from mailwarden import config
from mailwarden.admin.args import add_metrics, processes
from mailwarden.admin.context import Context

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _octal(text: str) -> int:
    return int(text, 8)


def register_lmtpd(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lmtpd", help="run the LMTP delivery server")
    p.add_argument(
        "--listen",
        action="append",
        metavar="ADDRESS",
        help="unix:/path or HOST:PORT (repeatable; default [lda] lmtp_listen)",
    )
    add_metrics(p)
    p.add_argument(
        "--socket-mode",
        type=_octal,
        default=0o666,
        metavar="MODE",
        help="permissions of unix sockets (octal, default 0666)",
    )
    p.add_argument(
        "--max-size",
        type=int,
        default=100 * 1024 * 1024,
        metavar="BYTES",
        help="largest message accepted (advertised as SIZE)",
    )
    p.add_argument(
        "--workers",
        type=processes,
        default=None,
        metavar="N",
        help="processes serving connections (default [lda] lmtp_workers, 1; "
        "N > 1: one parent hands them out)",
    )
    p.set_defaults(handler=cmd_lmtpd)


def cmd_lmtpd(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.lda import lmtp

    listen = list(args.listen or ctx.settings.lda.lmtp_listen)
    for spec in listen:
        lmtp.parse_listen(spec)  # a bad address is an operator mistake: ValueError below
    metrics = config.metrics_listen(args.metrics, ctx.settings, "mailwarden lmtpd")
    return lmtp.main(
        ctx.settings,
        listen,
        metrics or "",  # lmtp.main's "off"
        args.socket_mode,
        args.max_size,
        workers=args.workers or ctx.settings.lda.lmtp_workers,
    )


def register_deliver(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deliver", help="deliver one message from stdin (as mailwarden-lda)")
    p.add_argument("--sender", "-f", required=True)
    p.add_argument("--recipient", "-d", required=True)
    p.add_argument("--original-recipient", "-a", default="")
    p.set_defaults(handler=cmd_deliver)


def cmd_deliver(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.lda import pipe

    argv = ["--sender", args.sender, "--recipient", args.recipient]
    if args.original_recipient:
        argv += ["--original-recipient", args.original_recipient]
    if ctx.settings.source.startswith("/"):
        argv += ["--config", ctx.settings.source]
    return pipe.main(argv, sys.stdin.buffer, sys.stdout, sys.stderr)


# One entry per daemon subcommand; other daemons (policyd, milter) add theirs here.
DAEMONS: tuple[Register, ...] = (register_lmtpd, register_deliver)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for add in DAEMONS:
        add(sub)
