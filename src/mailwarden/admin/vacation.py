"""``mailwarden vacation set|off|show|list``: automatic out-of-office replies.

``vacation set ADDRESS --subject S --body-file F [--from DATE] [--until DATE]
[--interval DURATION]``
    switch on (or replace) the vacation reply of a mailbox. F is a UTF-8 text file of at
    most 65535 bytes (``-`` reads standard input). DATE is ``YYYY-MM-DD`` or an ISO 8601
    date and time, in local time unless it carries an offset; ``--until 2024-08-15``
    includes that whole day. Without ``--from`` it starts now, without ``--until`` it
    runs until switched off. ``--interval`` (default 7d) is how long to wait before
    answering the same sender again (RFC 5230 ``:days``). A new message is sent once to
    everybody, also to senders who got the previous one.
    The reply's subject is S (RFC 5230 ``:subject``), whatever the incoming subject.
``vacation off ADDRESS``              switch it off (the text is kept).
``vacation show ADDRESS [--json]``    the vacation of one mailbox.
``vacation list [--json]``            all vacations.
Times (``from``, ``until``, ``updated``) are ISO 8601 UTC, in JSON too.

The delivery agent sends the replies (RFC 3834 rules: never to lists, bulk mail,
automatic replies or the null sender). Errors: unknown mailbox, unreadable or too large
body file, a bad date or interval, an end before the start.
"""

from __future__ import annotations

import argparse
import sys

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import UsageError
from mailwarden.ops import vacation as ops
from mailwarden.units import parse_duration, parse_when

MAX_BODY = ops.MAX_BODY


def register(sub: Subparsers) -> None:
    verbs = command(sub, "vacation", "automatic out-of-office replies")
    v = verbs.add_parser("set", help="switch on the vacation reply of a mailbox")
    v.add_argument("address", metavar="ADDRESS")
    v.add_argument("--subject", required=True, metavar="TEXT")
    v.add_argument("--body-file", required=True, metavar="FILE", help="UTF-8 text, - = stdin")
    v.add_argument("--from", dest="start", metavar="DATE", help="YYYY-MM-DD or ISO date-time")
    v.add_argument("--until", dest="end", metavar="DATE", help="last day (inclusive) or time")
    v.add_argument("--interval", metavar="DURATION", default="7d", help="per sender (7d)")
    add_json(v)
    v.set_defaults(handler=cmd_set)
    v = verbs.add_parser("off", help="switch the vacation reply off")
    v.add_argument("address", metavar="ADDRESS")
    add_json(v)
    v.set_defaults(handler=cmd_off)
    v = verbs.add_parser("show", help="show the vacation of a mailbox")
    v.add_argument("address", metavar="ADDRESS")
    add_json(v)
    v.set_defaults(handler=cmd_show)
    v = verbs.add_parser("list", help="list all vacations")
    add_json(v)
    v.set_defaults(handler=cmd_list)


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    starts_at = parse_when(args.start, "--from") if args.start else None
    ends_at = parse_when(args.end, "--until", end=True) if args.end else None
    result = ops.set_vacation(
        ctx.ops,
        ctx.actor,
        args.address,
        subject=args.subject,
        body=read_body(args.body_file),
        starts_at=starts_at,
        ends_at=ends_at,
        interval=parse_duration(args.interval),
        body_name=f"body file {args.body_file!r}",
    )
    address = result.record["address"]
    ctx.done(
        f"vacation reply of {address} is on",
        address=address,
        subject=result.record["subject"],
        notes=result.notes,
    )
    return 0


def cmd_off(ctx: Context, args: argparse.Namespace) -> int:
    address, was_on = ops.off(ctx.ops, ctx.actor, args.address)
    text = f"vacation reply of {address} is off" + ("" if was_on else " (it was not on)")
    ctx.done(text, address=address, was_on=was_on)
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    record = ops.show(ctx.ops, ctx.actor, args.address)
    if not ctx.json:  # scripts also get the interval in seconds
        record.pop("interval_seconds")
    ctx.show(record)
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.list_all(ctx.ops, ctx.actor)
    ctx.table(rows, ["address", "active", "in_effect", "from", "until", "interval", "subject"])
    return 0


def read_body(path: str) -> str:
    """The body text from a file (``-`` = stdin), UTF-8; ``ops`` checks the rest."""
    try:
        if path == "-":
            data = _read_stdin(MAX_BODY + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(MAX_BODY + 1)
    except OSError as exc:
        raise UsageError(f"cannot read body file {path!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_BODY:
        raise UsageError(f"body file {path!r} is larger than {MAX_BODY} bytes (64 KiB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"body file {path!r} is not UTF-8 text") from None


def _read_stdin(limit: int) -> bytes:
    buffer = getattr(sys.stdin, "buffer", None)  # absent when stdin is replaced by text
    if buffer is not None:
        return bytes(buffer.read(limit))
    return sys.stdin.read(limit).encode("utf-8", "surrogateescape")
