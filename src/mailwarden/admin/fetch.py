"""``mailwarden fetch add|list|show|remove|run``: remote POP3/IMAP accounts a mailbox
collects from (the mail fetcher; docs/fetch.md). The daemon is ``mailwarden fetchd``.

``fetch add MAILBOX --protocol pop3|imap --host HOST --user NAME --password-stdin
[--port N] [--tls tls|starttls|none] [--no-verify-cert] [--folder F] [--delete]
[--interval 5m]``
    the remote password is read from the first line of stdin and stored encrypted with
    the key file ``[fetch] key_file`` (created 0600 here if missing). Without
    ``--delete`` the messages stay on the server (fetched once each).
``fetch list [MAILBOX] [--json]``, ``fetch show ID [--json]``
    the accounts, their last run and its result; never the password.
``fetch remove ID``
    forget the account and what it has seen.
``fetchd [--metrics HOST:PORT|none] [--workers N] [--once]``
    the daemon (``fetch.daemon``): runs each enabled account when its interval is due.
``fetch run [ID | --all] [--json]``
    run now, in the foreground (one account, or every enabled account); the per-account
    lock keeps it from overlapping with the daemon. Exit 1 when a run failed (remote
    down, login refused, TLS, ...: one line on stderr), 75 when a run was deferred (the
    local MTA answered 4xx or is down: the mail stays on the server for the next run).

Errors (one line, exit 1): unknown mailbox or account, a bad value, an account the
mailbox has already, a key file that cannot be created or read, a failed run.
"""

from __future__ import annotations

import argparse
import sys

from mailwarden.admin.args import Subparsers, command, option_value
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.fetch.options import add_arguments as add_daemon_arguments
from mailwarden.units import format_iso, parse_duration

EX_TEMPFAIL = 75  # sysexits: a run deferred (the local MTA refused for now); retry later
COLUMNS = [
    "id",
    "mailbox",
    "protocol",
    "host",
    "port",
    "tls",
    "username",
    "folder",
    "keep",
    "interval",
    "enabled",
    "last_run_at",
    "last_result",
]


def register(sub: Subparsers) -> None:
    verbs = command(sub, "fetch", "collect mail from remote POP3/IMAP accounts")
    v = verbs.add_parser("add", help="collect a remote account's mail into a mailbox")
    v.add_argument("mailbox", metavar="MAILBOX")
    v.add_argument("--protocol", required=True, choices=("pop3", "imap"))
    v.add_argument("--host", required=True)
    v.add_argument("--port", type=int, default=0, help="default 995/110 (POP3), 993/143 (IMAP)")
    v.add_argument(
        "--tls",
        default="tls",
        choices=("tls", "starttls", "none"),
        help="implicit TLS (default), STARTTLS, or none",
    )
    v.add_argument(
        "--no-verify-cert",
        action="store_true",
        help="accept a certificate that does not verify (self-signed)",
    )
    v.add_argument("--user", required=True, help="the remote login name")
    v.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the remote password from the first line of stdin",
    )
    v.add_argument("--folder", default="INBOX", help="IMAP folder (default INBOX)")
    v.add_argument(
        "--delete",
        action="store_true",
        help="delete each message on the server once delivered here",
    )
    v.add_argument("--interval", default="5m", help="how often the daemon runs it (default 5m)")
    add_json(v)
    v.set_defaults(handler=cmd_add)
    v = verbs.add_parser("list", help="fetch accounts")
    v.add_argument("mailbox", metavar="MAILBOX", nargs="?")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("show", help="one fetch account")
    v.add_argument("id", type=int, metavar="ID")
    add_json(v)
    v.set_defaults(handler=cmd_show)
    v = verbs.add_parser("remove", help="remove a fetch account")
    v.add_argument("id", type=int, metavar="ID")
    add_json(v)
    v.set_defaults(handler=cmd_remove)
    v = verbs.add_parser("run", help="run accounts now, in the foreground")
    which = v.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, metavar="ID", nargs="?")
    which.add_argument("--all", action="store_true", help="every enabled account")
    add_json(v)
    v.set_defaults(handler=cmd_run)
    d = sub.add_parser("fetchd", help="run the mail fetcher daemon (accounts by interval)")
    add_daemon_arguments(d)
    d.set_defaults(handler=cmd_fetchd)


def read_remote_password() -> str:
    line = sys.stdin.readline(4098)
    password = line.rstrip("\r\n")
    if not password or any(c in password for c in "\0\r\n"):
        raise UsageError("--password-stdin: expected the password on the first line of stdin")
    return password


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.fetch import secret
    from mailwarden.ops import fetch as ops

    password = read_remote_password()
    interval = option_value(parse_duration, args.interval, "--interval")
    key_file = ctx.settings.fetch.key_file
    created = secret.ensure_key(key_file)
    encrypted = secret.encrypt(secret.load_key(key_file), password)
    new = ops.NewAccount(
        mailbox=args.mailbox,
        protocol=args.protocol,
        host=args.host,
        username=args.user,
        password_enc=encrypted,
        port=args.port,
        tls=args.tls,
        verify_cert=not args.no_verify_cert,
        folder=args.folder,
        keep=not args.delete,
        interval=interval,
    )
    record = ops.add(ctx.ops, ctx.actor, new)
    if created:
        print(f"mailwarden: created the key file {key_file} (0600); back it up", file=sys.stderr)
    ctx.done(
        f"fetch account {record['id']}: {record['protocol']}://{record['username']}@"
        f"{record['host']}:{record['port']} into {record['mailbox']}",
        **_printable(record),
    )
    return 0


def _printable(record: dict[str, object]) -> dict[str, object]:
    out = dict(record)
    last = out.get("last_run_at")
    out["last_run_at"] = format_iso(last) if isinstance(last, int) else None
    return out


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.ops import fetch as ops

    rows = [_printable(r) for r in ops.listing(ctx.ops, ctx.actor, args.mailbox)]
    ctx.table(rows, COLUMNS)
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.ops import fetch as ops

    ctx.show(_printable(ops.show(ctx.ops, ctx.actor, args.id)))
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.ops import fetch as ops

    record = ops.remove(ctx.ops, ctx.actor, args.id)
    ctx.done(f"fetch account {args.id} removed ({record['mailbox']})", id=args.id)
    return 0


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.fetch.run import DEFERRED, ERROR, run_account
    from mailwarden.ops import fetch as ops
    from mailwarden.store import fetch as store

    env = ctx.ops
    if args.all:
        with env.db.transaction(write=False) as tx:
            accounts = [a for a in store.listing(tx) if a.enabled]
    else:
        accounts = [ops.get(env, ctx.actor, args.id)]
    results = [run_account(env.db, a, ctx.settings.fetch) for a in accounts]
    if ctx.json:
        ctx.show({"runs": [r.record() for r in results]})
    for r in results:
        if r.result == ERROR:
            print(f"mailwarden: fetch account {r.account}: {r.error}", file=sys.stderr)
        elif not ctx.json:
            ctx.out.write(
                f"fetch account {r.account}: {r.result}, {r.delivered} delivered, "
                f"{r.refused} refused, {r.deleted} deleted"
                + (f": {r.error}" if r.error else "")
                + "\n"
            )
    if any(r.result == ERROR for r in results):
        return 1
    return EX_TEMPFAIL if any(r.result == DEFERRED for r in results) else 0


def cmd_fetchd(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.fetch.daemon import run

    return run(ctx.settings, args)
