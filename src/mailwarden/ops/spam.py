"""Spam operations: settings per scope (global, domain, mailbox) and allow/block lists.

Rules: an action is tag, folder, discard, reject or ``inherit`` (None); a threshold is a
score 0..``MAX_THRESHOLD`` or ``inherit``; ``enforce`` applies to global and domain
scopes; a pattern is one of ``core.spamsettings.PATTERN_FORMS``; a domain scope is a
local domain, a mailbox scope an existing mailbox (``store.scopes``). Global settings
are an admin's; a domain admin works on its domains and their mailboxes (and may read
the global layer, which is part of every effective setting); a mailbox user on its own
mailbox only (``/me/spam``), without ``enforce``.

Who calls it: ``admin/spam.py``, ``api/app``.
Errors: see ``mailwarden.ops``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailwarden.core.spamsettings import (
    ACTIONS,
    Effective,
    Layer,
    parse_pattern,
    stored_pattern_note,
)
from mailwarden.errors import UsageError
from mailwarden.ops.base import Actor, Env, change
from mailwarden.store import scopes, spam
from mailwarden.store.db import Tx
from mailwarden.units import format_iso

INHERIT = "inherit"
# GTUBE scores 1000+; a mailbox that wants even GTUBE in its Inbox needs room above it.
MAX_THRESHOLD = 100000.0


@dataclass(frozen=True, slots=True)
class Settings:
    scope: str
    kind: str
    layer: Layer | None
    effective: Effective
    overridden: str | None = None  # why a stored row is not in effect

    def record(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "kind": self.kind,
            "own": own(self.layer),
            "effective": eff(self.effective),
        }


@dataclass(frozen=True, slots=True)
class Listed:
    scope: str
    kind: str
    pattern: str
    before: str | None  # the list it was on before, if any


def parse_action(value: str | None) -> str | None:
    """An action name, or None for ``inherit``."""
    text = (value or INHERIT).strip().lower()
    if text == INHERIT:
        return None
    if text not in ACTIONS:
        raise UsageError(f"invalid action {value!r}: use one of {', '.join(ACTIONS)} or inherit")
    return text


def parse_threshold(value: str | float | None) -> float | None:
    """A score threshold 0..MAX_THRESHOLD, or None for ``inherit``."""
    if value is None or (isinstance(value, str) and value.strip().lower() == INHERIT):
        return None
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"invalid threshold {value!r}: expected a number such as 5.0") from None
    if not math.isfinite(number) or number < 0 or number > MAX_THRESHOLD:
        raise UsageError(f"invalid threshold {value!r}: must be between 0 and {MAX_THRESHOLD:g}")
    return number


def own(layer: Layer | None) -> dict[str, Any] | None:
    if layer is None:
        return None
    return {"action": layer.action, "threshold": layer.threshold, "enforce": layer.enforce}


def eff(effective: Effective) -> dict[str, Any]:
    return {
        "action": effective.action,
        "threshold": effective.threshold,
        "source": effective.source,
        "locked_by": effective.locked_by,
    }


def _resolve(tx: Tx, actor: Actor, text: str, *, write: bool) -> scopes.Scope:
    parsed = scopes.parse_scope(text)
    if parsed.kind == "global":
        if write:
            actor.require_admin("change the global spam settings")
    elif actor.role == "user":
        if parsed.name != actor.mailbox:
            actor.require_sees(
                parsed.name.rpartition("@")[2], f"{parsed.kind} {parsed.name!r} does not exist"
            )
    else:
        domain = parsed.name.rpartition("@")[2]
        actor.require_sees(domain, f"{parsed.kind} {parsed.name!r} does not exist")
    return scopes.resolve(tx, text)


def _overridden(scope: scopes.Scope, effective: Effective) -> str | None:
    """Why the row just stored does not apply, or None: an enforced layer above it."""
    if effective.locked_by is None:
        return None
    domain = scope.name.rpartition("@")[2]
    above = effective.locked_by if effective.locked_by == "global" else domain
    hint = "global" if effective.locked_by == "global" else above
    return (
        f"stored, but not in effect: the {effective.locked_by} settings ({above}) are enforced, "
        f"so {effective.action} at {effective.threshold:g} applies until "
        f"'mailwarden spam set {hint} --no-enforce'"
    )


def set_settings(env: Env, actor: Actor, scope_text: str, changes: Mapping[str, Any]) -> Settings:
    """Change action/threshold/enforce of a scope (keys not given keep their value)."""
    values: dict[str, Any] = {}
    if "action" in changes:
        values["action"] = parse_action(changes["action"])
    if "threshold" in changes:
        values["threshold"] = parse_threshold(changes["threshold"])
    if "enforce" in changes:
        values["enforce"] = bool(changes["enforce"])
    with change(env, actor, "spam.set", scope_text, None, self_service=True) as ch:
        scope = _resolve(ch.tx, actor, scope_text, write=True)
        if scope.kind == "mailbox" and values.get("enforce"):
            raise UsageError("--enforce applies to global and domain scopes (no layer below)")
        ch.obj = scope.name
        ch.domain = None if scope.kind == "global" else scope.name.rpartition("@")[2]
        ch.before = own(spam.get_layer(ch.tx, scope.name))
        layer = spam.set_settings(ch.tx, scope, values)
        effective = spam.layers_for_scope(ch.tx, scope).effective()
        ch.after = own(layer)
    return Settings(scope.name, scope.kind, layer, effective, _overridden(scope, effective))


def show(env: Env, actor: Actor, scope_text: str) -> Settings:
    with env.db.read() as tx:
        scope = _resolve(tx, actor, scope_text, write=False)
        layer = spam.get_layer(tx, scope.name)
        effective = spam.layers_for_scope(tx, scope).effective()
    return Settings(scope.name, scope.kind, layer, effective)


def list_entry(env: Env, actor: Actor, scope_text: str, kind: str, pattern_text: str) -> Listed:
    """Put a pattern on the allow or block list of a scope (moving it if listed)."""
    if kind not in ("allow", "block"):
        raise UsageError(f"invalid list {kind!r}: use allow or block")
    pattern = parse_pattern(pattern_text)
    with change(env, actor, f"spam.{kind}", scope_text, None, self_service=True) as ch:
        scope = _resolve(ch.tx, actor, scope_text, write=True)
        ch.obj = f"{scope.name} {pattern}"
        ch.domain = None if scope.kind == "global" else scope.name.rpartition("@")[2]
        before = spam.list_entry(ch.tx, scope, kind, pattern, int(time.time()))
        ch.before = None if before is None else {"list": before, "pattern": pattern}
        ch.after = {"list": kind, "pattern": pattern}
    return Listed(scope.name, kind, pattern, before)


def unlist(env: Env, actor: Actor, scope_text: str, pattern_text: str) -> tuple[str, str]:
    """Take a pattern off the lists of a scope; (scope, stored pattern)."""
    with change(env, actor, "spam.unlist", scope_text, None, self_service=True) as ch:
        scope = _resolve(ch.tx, actor, scope_text, write=True)
        stored = {str(r["pattern"]): str(r["kind"]) for r in spam.entries(ch.tx, scope.name)}
        pattern = _listed_pattern(pattern_text, list(stored))
        ch.obj = f"{scope.name} {pattern}"
        ch.domain = None if scope.kind == "global" else scope.name.rpartition("@")[2]
        ch.before = {"list": stored.get(pattern), "pattern": pattern}
        spam.unlist(ch.tx, scope.name, pattern)
    return scope.name, pattern


def _listed_pattern(text: str, stored: list[str]) -> str:
    """The stored form of PATTERN; a row in no accepted form can be named as stored."""
    try:
        return parse_pattern(text)
    except UsageError:
        if text.strip() in stored:
            return text.strip()
        raise


def entries(env: Env, actor: Actor, scope_text: str) -> list[dict[str, Any]]:
    with env.db.read() as tx:
        scope = _resolve(tx, actor, scope_text, write=False)
        rows = spam.entries(tx, scope.name)
    return [
        {
            "scope": scope.name,
            "kind": r["kind"],
            "pattern": r["pattern"],
            "created_at": format_iso(int(r["created_at"])),
            "note": stored_pattern_note(str(r["pattern"])),
        }
        for r in rows
    ]
