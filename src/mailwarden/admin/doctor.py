"""``mailwarden doctor``: end-to-end diagnostic (see ``mailwarden.doctor``).

Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check the whole mail system end to end")
    p.add_argument("--smtp", default="127.0.0.1:25", metavar="HOST:PORT")
    p.add_argument("--imap", default="127.0.0.1:143", metavar="HOST:PORT")
    p.add_argument("--pop3", default="127.0.0.1:110", metavar="HOST:PORT")
    p.add_argument("--postfix-dir", default="/etc/postfix", metavar="DIR")
    p.add_argument("--dovecot-conf", default="/etc/dovecot/dovecot.conf", metavar="FILE")
    p.add_argument("--metrics", default="", metavar="HOST:PORT", help="default [metrics] listen")
    p.add_argument("--domain", default="", help="domain for the test mailboxes (first local)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="per check")
    p.add_argument("--clamd-conf", default="/etc/clamav/clamd.conf", metavar="FILE")
    p.set_defaults(handler=cmd_doctor)


def cmd_doctor(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.doctor import runner
    from mailwarden.doctor.checks import Options, Probe

    opts = Options(
        smtp=args.smtp,
        imap=args.imap,
        pop3=args.pop3,
        postfix_dir=args.postfix_dir,
        dovecot_conf=args.dovecot_conf,
        metrics=args.metrics,
        domain=args.domain,
        timeout=args.timeout,
        clamd_conf=args.clamd_conf,
    )
    return runner.run(Probe(ctx.settings, opts), ctx.out)
