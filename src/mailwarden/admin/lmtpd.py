"""``mailwarden lmtpd``: run the LMTP delivery server (``mailwarden.lmtpd``).

Who calls it: ``admin.cli`` (the parser). The server (asyncio, prometheus_client, the
delivery core) is imported only when the command runs, so ``mailwarden --help`` and the
admin commands never load it. ``--config`` may also follow the subcommand (``cli.Parser``).

Errors: a bad option value is argparse's one line (exit 2); a bad listen address is a
one-line error (exit 1); the server's own errors are its one line (exit 1).
"""

from __future__ import annotations

import argparse

from mailwarden import config
from mailwarden.admin.args import add_metrics, processes
from mailwarden.admin.context import Context


def _octal(text: str) -> int:
    return int(text, 8)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    from mailwarden.lmtpd import server as lmtp

    listen = list(args.listen or ctx.settings.lda.lmtp_listen)  # checked by lmtp.main
    metrics = config.metrics_listen(args.metrics, ctx.settings, "mailwarden lmtpd")
    return lmtp.main(
        ctx.settings,
        listen,
        metrics or "",  # lmtp.main's "off"
        args.socket_mode,
        args.max_size,
        workers=args.workers or ctx.settings.lda.lmtp_workers,
    )
