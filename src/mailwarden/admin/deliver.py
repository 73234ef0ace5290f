"""``mailwarden deliver``: deliver one message from stdin, like ``mailwarden-lda``.

Who calls it: ``admin.cli`` (the parser). It hands its options to the pipe adapter
(``mailwarden.pipe.lda``), which answers with sysexits: 0 delivered, 67/77/... a
permanent failure, 75 (EX_TEMPFAIL) anything unexpected, so the MTA keeps the mail.
"""

from __future__ import annotations

import argparse
import sys

from mailwarden.admin.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deliver", help="deliver one message from stdin (as mailwarden-lda)")
    p.add_argument("--sender", "-f", required=True)
    p.add_argument("--recipient", "-d", required=True)
    p.add_argument("--original-recipient", "-a", default="")
    p.set_defaults(handler=cmd_deliver)


def cmd_deliver(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.pipe import lda as pipe

    argv = ["--sender", args.sender, "--recipient", args.recipient]
    if args.original_recipient:
        argv += ["--original-recipient", args.original_recipient]
    if ctx.settings.source.startswith("/"):
        argv += ["--config", ctx.settings.source]
    return pipe.main(argv, sys.stdin.buffer, sys.stdout, sys.stderr)
