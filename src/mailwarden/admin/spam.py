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
import math
import sys
import time
from typing import Any

from mailwarden.admin.args import Subparsers, command
from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.core.spamsettings import (
    ACTIONS,
    PATTERN_FORMS,
    Effective,
    Layer,
    parse_pattern,
    stored_pattern_note,
)
from mailwarden.errors import UsageError
from mailwarden.store import scopes, spam
from mailwarden.units import format_iso

INHERIT = "inherit"
# GTUBE scores 1000+; a mailbox that wants even GTUBE in its Inbox needs room above it.
MAX_THRESHOLD = 100000.0


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
        changes["action"] = parse_action(args.action)
    if args.threshold is not None:
        changes["threshold"] = parse_threshold(args.threshold)
    if args.enforce is not None:
        changes["enforce"] = args.enforce
    with ctx.db().transaction() as tx:
        scope = scopes.resolve(tx, args.scope)
        if scope.kind == "mailbox" and changes.get("enforce"):
            raise UsageError("--enforce applies to global and domain scopes (no layer below)")
        layer = spam.set_settings(tx, scope, changes)
        eff = spam.layers_for_scope(tx, scope).effective()
    overridden = _overridden(scope, eff)
    if overridden:
        print(f"mailwarden: warning: {overridden}", file=sys.stderr)
    ctx.done(
        f"spam settings of {scope.name}: {_describe(layer)}",
        scope=scope.name,
        own=_own(layer),
        effective=_eff(eff),
        warnings=[overridden] if overridden else [],
    )
    return 0


def _overridden(scope: scopes.Scope, eff: Effective) -> str | None:
    """Why the row just stored does not apply, or None: an enforced layer above it."""
    if eff.locked_by is None:
        return None
    above = eff.locked_by if eff.locked_by == "global" else _domain_of(scope.name)
    hint = "global" if eff.locked_by == "global" else above
    return (
        f"stored, but not in effect: the {eff.locked_by} settings ({above}) are enforced, "
        f"so {eff.action} at {eff.threshold:g} applies until "
        f"'mailwarden spam set {hint} --no-enforce'"
    )


def _domain_of(scope_name: str) -> str:
    return scope_name.rpartition("@")[2]


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.db().read() as tx:
        scope = scopes.resolve(tx, args.scope)
        own = spam.get_layer(tx, scope.name)
        eff = spam.layers_for_scope(tx, scope).effective()
    if ctx.json:
        ctx.show(
            {"scope": scope.name, "kind": scope.kind, "own": _own(own), "effective": _eff(eff)}
        )
        return 0
    record: dict[str, Any] = {"scope": scope.name, "kind": scope.kind}
    record.update(_own(own) or {"action": None, "threshold": None, "enforce": None})
    record.update({f"effective {k.replace('_', ' ')}": v for k, v in _eff(eff).items()})
    ctx.show(record)
    return 0


def cmd_list_entry(ctx: Context, args: argparse.Namespace) -> int:
    pattern = parse_pattern(args.pattern)
    with ctx.db().transaction() as tx:
        scope = scopes.resolve(tx, args.scope)
        before = spam.list_entry(tx, scope, args.kind, pattern, int(time.time()))
    if before == args.kind:
        text = f"{pattern} was already on the {args.kind} list of {scope.name}"
    elif before is not None:
        text = f"{pattern} moved from the {before} to the {args.kind} list of {scope.name}"
    else:
        text = f"{pattern} added to the {args.kind} list of {scope.name}"
    ctx.done(text, scope=scope.name, kind=args.kind, pattern=pattern, before=before)
    return 0


def cmd_unlist(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.db().transaction() as tx:
        scope = scopes.resolve(tx, args.scope)
        pattern = _listed_pattern(
            args.pattern, [str(r["pattern"]) for r in spam.entries(tx, scope.name)]
        )
        spam.unlist(tx, scope.name, pattern)
    ctx.done(f"{pattern} removed from the lists of {scope.name}", scope=scope.name, pattern=pattern)
    return 0


def _listed_pattern(text: str, stored: list[str]) -> str:
    """The stored form of PATTERN; a row in no accepted form can be named as stored."""
    try:
        return parse_pattern(text)
    except UsageError:
        if text.strip() in stored:
            return text.strip()
        raise


def cmd_lists(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.db().read() as tx:
        scope = scopes.resolve(tx, args.scope)
        rows = spam.entries(tx, scope.name)
    out = [
        {
            "scope": scope.name,
            "kind": r["kind"],
            "pattern": r["pattern"],
            "created_at": format_iso(int(r["created_at"])),
            "note": stored_pattern_note(str(r["pattern"])),
        }
        for r in rows
    ]
    ctx.table(out, ["scope", "kind", "pattern", "note"])
    return 0


def parse_action(text: str) -> str | None:
    """An action name, or None for ``inherit``."""
    value = text.strip().lower()
    if value == INHERIT:
        return None
    if value not in ACTIONS:
        raise UsageError(f"invalid action {text!r}: use one of {', '.join(ACTIONS)} or inherit")
    return value


def parse_threshold(text: str) -> float | None:
    """A score threshold 0..1000, or None for ``inherit``."""
    if text.strip().lower() == INHERIT:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"invalid threshold {text!r}: expected a number such as 5.0") from None
    if not math.isfinite(value) or value < 0 or value > MAX_THRESHOLD:
        raise UsageError(f"invalid threshold {text!r}: must be between 0 and {MAX_THRESHOLD:g}")
    return value


def _own(layer: Layer | None) -> dict[str, Any] | None:
    if layer is None:
        return None
    return {"action": layer.action, "threshold": layer.threshold, "enforce": layer.enforce}


def _eff(eff: Effective) -> dict[str, Any]:
    return {
        "action": eff.action,
        "threshold": eff.threshold,
        "source": eff.source,
        "locked_by": eff.locked_by,
    }


def _describe(layer: Layer) -> str:
    action = layer.action or INHERIT
    threshold = INHERIT if layer.threshold is None else f"{layer.threshold:g}"
    return f"action {action}, threshold {threshold}, enforce {'yes' if layer.enforce else 'no'}"
