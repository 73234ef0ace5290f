"""``mailwarden quota show|list``: mailbox usage against its quota.

``quota show ADDRESS [--json]``
    the limits of a mailbox (bytes, messages; 0 = unlimited) and its usage as last
    recorded by the delivery agent (``-`` when nothing was delivered yet).
``quota list [--domain DOMAIN] [--over PERCENT] [--json]``
    all mailboxes (or those of one domain); ``--over 90`` lists only mailboxes at or
    above 90 % of a limit. ``percent`` is the higher of bytes and messages used.
``quota recalc ADDRESS | --domain DOMAIN | --all [--json]``
    count the messages in each Maildir again (``delivery.quota.recalc_maildir``: every
    folder but Trash, under the Maildir's exclusive lock, so deliveries wait), rewrite
    its ``maildirsize`` and store the sums in ``quota_usage``. For a ``maildirsize``
    that is wrong (a crash between a delivery and its line, files moved by hand) or
    a ``quota_usage`` behind it. A mailbox without a Maildir counts 0. On a terminal,
    a progress line on stderr while more than one mailbox is counted.

Limits are changed with ``mailwarden user``; usage comes from ``maildirsize``. The rules
of ``show`` and ``list`` are ``ops.quota``'s (the API's ``/quota`` answers the same).
Errors: unknown mailbox or domain, a percent that is not a number >= 0; ``recalc``
goes on past a Maildir it cannot read, names it on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from mailwarden import address as addresses
from mailwarden.address import normalize_domain
from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.ops import quota as ops_quota
from mailwarden.store import quota, scopes
from mailwarden.units import format_size, format_size_limit

COLUMNS = ["address", "quota", "used", "messages", "percent"]


def register(sub: Subparsers) -> None:
    verbs = command(sub, "quota", "mailbox usage against quota")
    v = verbs.add_parser("show", help="usage of one mailbox")
    v.add_argument("address", metavar="ADDRESS")
    add_json(v)
    v.set_defaults(handler=cmd_show)
    v = verbs.add_parser("list", help="usage of all mailboxes")
    v.add_argument("--domain", metavar="DOMAIN", help="only this domain")
    v.add_argument("--over", metavar="PERCENT", help="only mailboxes at or above PERCENT")
    add_json(v)
    v.set_defaults(handler=cmd_list)
    v = verbs.add_parser("recalc", help="count the Maildirs again: maildirsize and quota_usage")
    v.add_argument("address", metavar="ADDRESS", nargs="?", help="one mailbox")
    v.add_argument("--domain", metavar="DOMAIN", help="every mailbox of a domain")
    v.add_argument("--all", action="store_true", help="every mailbox")
    add_json(v)
    v.set_defaults(handler=cmd_recalc)


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    record = ops_quota.show(ctx.ops, ctx.actor, args.address)
    ctx.show(record if ctx.json else _display(record))
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops_quota.list_all(ctx.ops, ctx.actor, domain=args.domain, over=args.over)
    ctx.table(rows if ctx.json else [_display(r) for r in rows], COLUMNS)
    return 0


def _display(rec: dict[str, Any]) -> dict[str, Any]:
    """The same record for people: sizes as 500M, limits of 0 as unlimited."""
    limit_b, limit_m = rec["quota_bytes"], rec["quota_messages"]
    used_b, used_m = rec["used_bytes"], rec["used_messages"]
    percent = rec["percent"]
    return {
        "address": rec["address"],
        "quota": format_size_limit(limit_b) + (f", {limit_m} messages" if limit_m else ""),
        "used": None if used_b is None else format_size(used_b),
        "messages": used_m,
        "percent": None if percent is None else f"{percent:g}%",
        "updated": rec["updated"],
    }


RECALC_COLUMNS = ["address", "used", "messages", "maildir"]


def cmd_recalc(ctx: Context, args: argparse.Namespace) -> int:
    from mailwarden.delivery.maildir import MaildirError
    from mailwarden.delivery.quota import recalc_maildir

    chosen = [args.address is not None, args.domain is not None, bool(args.all)]
    if sum(chosen) != 1:
        raise UsageError("quota recalc: give one of ADDRESS, --domain DOMAIN or --all")
    with ctx.db().read() as tx:
        if args.address is not None:
            boxes = quota.mailboxes(tx, address=scopes.mailbox(tx, args.address).address)
        elif args.domain is not None:
            domain = normalize_domain(args.domain)
            scopes.local_domain(tx, domain)
            boxes = quota.mailboxes(tx, domain=domain)
        else:
            boxes = quota.mailboxes(tx)
    mail = ctx.settings.mail
    owner = (mail.uid, mail.gid) if os.geteuid() == 0 else None
    progress = _Progress(len(boxes), enabled=len(boxes) > 1 and sys.stderr.isatty())
    rows: list[dict[str, Any]] = []
    failed = 0
    for box in boxes:
        progress.step(str(box["address"]))
        path = addresses.maildir_path(mail.root, str(box["maildir"]))
        try:
            used = recalc_maildir(
                mail.root, path, int(box["quota_bytes"]), int(box["quota_messages"]), owner
            )
        except (MaildirError, OSError) as exc:
            progress.clear()
            why = exc.verdict.text if isinstance(exc, MaildirError) else exc.strerror or exc
            print(f"mailwarden: quota recalc {box['address']}: {why}", file=sys.stderr)
            failed += 1
            continue
        nbytes, count = (used.bytes, used.messages) if used is not None else (0, 0)
        with ctx.db().transaction() as tx:
            quota.set_usage(tx, int(box["id"]), nbytes, count, int(time.time()))
        rows.append(
            {
                "address": str(box["address"]),
                "used_bytes": nbytes,
                "used_messages": count,
                "maildir": "counted" if used is not None else "none yet",
            }
        )
    progress.clear()
    if ctx.json:
        ctx.table(rows, RECALC_COLUMNS)
    else:
        shown = [
            {
                "address": r["address"],
                "used": format_size(r["used_bytes"]),
                "messages": r["used_messages"],
                "maildir": r["maildir"],
            }
            for r in rows
        ]
        ctx.table(shown, RECALC_COLUMNS)
    return 1 if failed else 0


class _Progress:
    """``quota recalc: 12/500 alice@example.test`` rewritten in place on a terminal."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.shown = False

    def step(self, what: str) -> None:
        self.done += 1
        if self.enabled:
            sys.stderr.write(f"\r\033[Kquota recalc: {self.done}/{self.total} {what[:60]}")
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False
