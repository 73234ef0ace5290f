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
import time
from typing import Any

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.errors import NotFound, UsageError
from mailwarden.store import scopes, vacation
from mailwarden.units import format_duration, format_iso, parse_duration, parse_when

MAX_BODY = 65535  # bytes: what a MariaDB TEXT column holds
MAX_SUBJECT = 255


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
    subject = _subject(args.subject)
    starts_at = parse_when(args.start, "--from") if args.start else None
    ends_at = parse_when(args.end, "--until", end=True) if args.end else None
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise UsageError(f"--until {args.end} is not after --from {args.start}")
    interval = parse_duration(args.interval)
    if interval <= 0:
        raise UsageError(f"invalid interval {args.interval!r}: must be longer than 0")
    body = read_body(args.body_file)
    now = int(time.time())
    with ctx.db().transaction() as tx:
        box = scopes.mailbox(tx, args.address)
        vacation.set_vacation(
            tx,
            box.id,
            subject=subject,
            body=body,
            starts_at=starts_at,
            ends_at=ends_at,
            interval=interval,
            now=now,
        )
    notes = []
    if ends_at is not None and ends_at <= now:
        notes.append(f"it ended already ({format_iso(ends_at)}), so no replies will be sent")
    ctx.done(
        f"vacation reply of {box.address} is on",
        address=box.address,
        subject=subject,
        notes=notes,
    )
    return 0


def cmd_off(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.db().transaction() as tx:
        box = scopes.mailbox(tx, args.address)
        was_on = vacation.off(tx, box.id, int(time.time()))
    text = f"vacation reply of {box.address} is off" + ("" if was_on else " (it was not on)")
    ctx.done(text, address=box.address, was_on=was_on)
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.db().read() as tx:
        box = scopes.mailbox(tx, args.address)
        vac = vacation.get(tx, box.id)
    if vac is None:
        raise NotFound(f"mailbox {box.address!r} has no vacation reply")
    record = _record(box.address, vac, int(time.time()), body=True)
    if not ctx.json:  # scripts also get the interval in seconds
        record.pop("interval_seconds")
    ctx.show(record)
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.db().read() as tx:
        entries = vacation.list_all(tx)
    now = int(time.time())
    rows = [_record(address, vac, now, body=False) for address, vac in entries]
    ctx.table(rows, ["address", "active", "in_effect", "from", "until", "interval", "subject"])
    return 0


def read_body(path: str) -> str:
    """The body text from a file (``-`` = stdin): UTF-8, not empty, at most MAX_BODY bytes."""
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
        body = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"body file {path!r} is not UTF-8 text") from None
    if "\0" in body:
        raise UsageError(f"body file {path!r} contains NUL characters")
    if not body.strip():
        raise UsageError(f"body file {path!r} is empty")
    return body


def _read_stdin(limit: int) -> bytes:
    buffer = getattr(sys.stdin, "buffer", None)  # absent when stdin is replaced by text
    if buffer is not None:
        return bytes(buffer.read(limit))
    return sys.stdin.read(limit).encode("utf-8", "surrogateescape")


def _subject(text: str) -> str:
    subject = text.strip()
    if not subject:
        raise UsageError("--subject is empty")
    if len(subject) > MAX_SUBJECT:
        raise UsageError(f"--subject is longer than {MAX_SUBJECT} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in subject):
        raise UsageError("--subject may not contain control characters (it becomes a header)")
    return subject


def _record(address: str, vac: vacation.Vacation, now: int, *, body: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "address": address,
        "active": vac.active,
        "in_effect": vac.in_effect(now),
        "from": format_iso(vac.starts_at),
        "until": format_iso(vac.ends_at),
        "interval": format_duration(vac.interval_seconds),
        "subject": vac.subject,
        "interval_seconds": vac.interval_seconds,
        "updated": format_iso(vac.updated_at),
    }
    if body:
        record["body"] = vac.body
    return record
