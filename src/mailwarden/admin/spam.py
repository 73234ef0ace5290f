"""``mailwarden spam set|show|allow|block|unlist|lists``: spam treatment and allow/block lists.

SCOPE is ``global``, a local domain or a mailbox address. Settings and lists are layered
global -> domain -> mailbox: a lower layer overrides what it sets, unless a layer above
it is enforced (``--enforce``), see ``core.spamsettings``.

``spam set SCOPE [--action tag|folder|discard|reject|inherit] [--threshold N|inherit]
[--enforce | --no-enforce]``
    create or change the row of SCOPE; options not given keep their value (a new row
    inherits them). ``inherit`` clears a domain or mailbox setting; the global row must
    keep values. ``--enforce`` applies to global and domain scopes.
    When an enforced layer above SCOPE overrides it, the row is still stored (it applies
    once that layer stops enforcing) and a warning on stderr names the layer and what
    applies instead (``warnings`` with ``--json``).
``spam show SCOPE [--json]``
    the row of SCOPE (``-`` = inherited) and the effective settings after layering.
``spam allow SCOPE PATTERN`` / ``spam block SCOPE PATTERN``
    PATTERN is ``user@domain``, ``@domain`` (or ``*@domain``), ``@*.domain`` (every
    subdomain; ``*.domain`` too) or a client IP, CIDR or ``a.b.c.*`` wildcard; any other
    ``*`` is refused (``core.spamsettings``). A pattern is on one list per scope: blocking
    an allowed pattern moves it.
``spam unlist SCOPE PATTERN``      take a pattern off the lists of SCOPE (a row stored in
                                   no accepted form is named exactly as ``lists`` shows it).
``spam lists SCOPE [--json]``      the allow/block entries of SCOPE; ``note`` says when a
                                   row matches as another form or matches nothing.

Actions: ``tag`` headers only; ``folder`` file into the junk folder; ``discard``;
``reject`` at SMTP time. Errors: unknown scope, action or pattern, a negative threshold.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.core.spamsettings import PATTERN_FORMS, Layer
from mailwarden.ops import spam as ops

INHERIT = ops.INHERIT


def register(sub: Subparsers) -> None:
    verbs = command(sub, "spam", "spam treatment and allow/block lists")
    v = verbs.add_parser("set", help="change the spam settings of a scope")
    v.add_argument("scope", metavar="SCOPE", help="global, a domain or an address")
    v.add_argument("--action", metavar="ACTION", help="tag, folder, discard, reject or inherit")
    v.add_argument("--threshold", metavar="N", help="score at which the action applies")
    group = v.add_mutually_exclusive_group()
    group.add_argument("--enforce", dest="enforce", action="store_true", default=None)
    group.add_argument("--no-enforce", dest="enforce", action="store_false")
    add_json(v)
    v.set_defaults(handler=cmd_set)
    v = verbs.add_parser("show", help="show own and effective settings of a scope")
    v.add_argument("scope", metavar="SCOPE")
    add_json(v)
    v.set_defaults(handler=cmd_show)
    for kind in ("allow", "block"):
        v = verbs.add_parser(kind, help=f"{kind} a sender, @domain or client network")
        v.add_argument("scope", metavar="SCOPE")
        v.add_argument("pattern", metavar="PATTERN", help=PATTERN_FORMS)
        add_json(v)
        v.set_defaults(handler=cmd_list_entry, kind=kind)
    v = verbs.add_parser("unlist", help="take a pattern off the lists of a scope")
    v.add_argument("scope", metavar="SCOPE")
    v.add_argument("pattern", metavar="PATTERN")
    add_json(v)
    v.set_defaults(handler=cmd_unlist)
    v = verbs.add_parser("lists", help="show the allow/block lists of a scope")
    v.add_argument("scope", metavar="SCOPE")
    add_json(v)
    v.set_defaults(handler=cmd_lists)


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.action is not None:
        changes["action"] = args.action
    if args.threshold is not None:
        changes["threshold"] = args.threshold
    if args.enforce is not None:
        changes["enforce"] = args.enforce
    result = ops.set_settings(ctx.ops, ctx.actor, args.scope, changes)
    if result.overridden:
        print(f"mailwarden: warning: {result.overridden}", file=sys.stderr)
    assert result.layer is not None
    ctx.done(
        f"spam settings of {result.scope}: {_describe(result.layer)}",
        scope=result.scope,
        own=ops.own(result.layer),
        effective=ops.eff(result.effective),
        warnings=[result.overridden] if result.overridden else [],
    )
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    result = ops.show(ctx.ops, ctx.actor, args.scope)
    if ctx.json:
        ctx.show(result.record())
        return 0
    record: dict[str, Any] = {"scope": result.scope, "kind": result.kind}
    record.update(ops.own(result.layer) or {"action": None, "threshold": None, "enforce": None})
    effective = ops.eff(result.effective)
    record.update({f"effective {k.replace('_', ' ')}": v for k, v in effective.items()})
    ctx.show(record)
    return 0


def cmd_list_entry(ctx: Context, args: argparse.Namespace) -> int:
    got = ops.list_entry(ctx.ops, ctx.actor, args.scope, args.kind, args.pattern)
    pattern, before, scope = got.pattern, got.before, got.scope
    if before == args.kind:
        text = f"{pattern} was already on the {args.kind} list of {scope}"
    elif before is not None:
        text = f"{pattern} moved from the {before} to the {args.kind} list of {scope}"
    else:
        text = f"{pattern} added to the {args.kind} list of {scope}"
    ctx.done(text, scope=scope, kind=args.kind, pattern=pattern, before=before)
    return 0


def cmd_unlist(ctx: Context, args: argparse.Namespace) -> int:
    scope, pattern = ops.unlist(ctx.ops, ctx.actor, args.scope, args.pattern)
    ctx.done(f"{pattern} removed from the lists of {scope}", scope=scope, pattern=pattern)
    return 0


def cmd_lists(ctx: Context, args: argparse.Namespace) -> int:
    rows = ops.entries(ctx.ops, ctx.actor, args.scope)
    ctx.table(rows, ["scope", "kind", "pattern", "note"])
    return 0


def _describe(layer: Layer) -> str:
    action = layer.action or INHERIT
    threshold = INHERIT if layer.threshold is None else f"{layer.threshold:g}"
    return f"action {action}, threshold {threshold}, enforce {'yes' if layer.enforce else 'no'}"
