"""``mailwarden setup``: the installer (see ``mailwarden.setup``).

Without ``--apply`` it only prints what it would change (``--dry-run`` is the default).
Exit status 0 when the plan was shown or carried out; 1 with one line on stderr when
the input is bad, before anything changed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys

from mailwarden.admin.context import Context
from mailwarden.errors import MailwardenError, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from mailwarden.setup.answers import add_arguments

    p = sub.add_parser("setup", help="install: wire Postfix and Dovecot, create the schema")
    add_arguments(p)
    p.set_defaults(handler=cmd_setup)


def _cli(config_path: str) -> object:
    def run(argv: list[str]) -> str:
        from mailwarden.admin import cli

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(["--config", config_path, *argv])
        if rc != 0:
            raise MailwardenError(f"mailwarden {' '.join(argv)}: {err.getvalue().strip()}")
        return out.getvalue()

    return run


def cmd_setup(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.setup import answers, plan, preflight, render

    ask = None
    if not args.non_interactive:
        if not sys.stdin.isatty():
            raise UsageError("standard input is not a terminal: use --non-interactive and flags")
        ask = answers.terminal_ask
    a = answers.gather(args, ask)
    contrib = render.contrib_dir(args.contrib_dir)
    preflight.run_all(a)
    the_plan = plan.build(a, contrib)
    if not args.apply:
        plan.show(the_plan, ctx.out)
        if not the_plan.empty:
            ctx.out.write("(dry run: nothing changed; run again with --apply)\n")
        return 0
    if the_plan.empty:
        ctx.out.write("mailwarden setup: nothing to change\n")
        return 0
    plan.show(the_plan, ctx.out)
    plan.apply(the_plan, ctx.out, _cli(a.config_path))  # type: ignore[arg-type]
    ctx.out.write("mailwarden setup: done; next: mailwarden serve, then mailwarden doctor\n")
    return 0
