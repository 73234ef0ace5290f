"""Read what mailwarden holds for a ``plan.Source`` and write the plan's ``add`` items.

``existing(env, source)`` asks the ``mailwarden.ops`` readers for every object the
source names (absent ones stay out). ``apply(env, plan, who)`` writes each ``add`` item
through the ``ops`` function an admin would use (``domains.add``, ``mailboxes.add`` with
the kept hash, ``aliases.add``, ``forwards.replace``, ``vacation.set_vacation``): one
transaction and one audit row per object, actor ``import:<source>`` (an admin). ``same``,
``conflict`` and ``unsupported`` items are never written. An object the ops layer refuses
(e.g. an alias to a mailbox that was skipped) is reported as ``failed`` with its one-line
reason; the others go on. Aliases that point at aliases are retried until none succeeds.

Who calls it: ``admin/imports.py``. Errors: the store's ``StoreError`` ends the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailwarden.errors import MailwardenError, NotFound, StoreError, UsageError
from mailwarden.imports import plan as p
from mailwarden.imports.hashes import Clear, Kept
from mailwarden.ops import aliases, domains, forwards, mailboxes, vacation
from mailwarden.ops.base import Actor, Env


@dataclass(frozen=True, slots=True)
class Outcome:
    item: p.Item
    result: str  # "added" or "failed"
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {**self.item.as_json(), "result": self.result, "error": self.detail or None}


def _get(
    read: Callable[[Env, Actor, str], dict[str, Any]], env: Env, actor: Actor, key: str
) -> dict[str, Any] | None:
    try:
        return read(env, actor, key)
    except NotFound:
        return None


def existing(env: Env, actor: Actor, source: p.Source) -> p.Existing:
    """mailwarden's records of every object ``source`` names."""
    have = p.Existing()
    for dom in source.domains:
        if rec := _get(domains.show, env, actor, dom.name):
            have.domains[dom.name] = rec
    addresses = [m.address for m in source.mailboxes] + [a.source for a in source.aliases]
    addresses += [f.address for f in source.forwards]
    for addr in dict.fromkeys(addresses):
        if addr.startswith("@") or addr.rpartition("@")[2] not in have.domains:
            continue
        if rec := _get(mailboxes.show, env, actor, addr):
            have.mailboxes[addr] = rec
        elif rec := _get(aliases.show, env, actor, addr):
            have.aliases[addr] = rec
    for alias in source.aliases:  # catch-alls (the addresses were looked up above)
        here = alias.source.startswith("@") and alias.source[1:] in have.domains
        if here and (rec := _get(aliases.show, env, actor, alias.source)):
            have.aliases[alias.source] = rec
    for vac in source.vacations:
        if vac.address in have.mailboxes and (rec := _get(_vacation, env, actor, vac.address)):
            have.vacations[vac.address] = rec
    return have


def _vacation(env: Env, actor: Actor, addr: str) -> dict[str, Any]:
    return vacation.show(env, actor, addr)


def apply(env: Env, plan: p.Plan, who: str) -> list[Outcome]:
    """Write the ``add`` items (see the module doc); one outcome per item tried."""
    actor = Actor(who, "admin")
    todo = plan.having("add")
    done: list[Outcome] = []
    while todo:
        failed: list[Outcome] = []
        for item in todo:
            try:
                _write(env, actor, item.obj)
                done.append(Outcome(item, "added"))
            except StoreError:
                raise
            except MailwardenError as exc:
                failed.append(Outcome(item, "failed", str(exc)))
        retry = [o.item for o in failed if o.item.kind == "alias"]
        if len(failed) == len(todo) or not retry or len(retry) == len(todo):
            done += failed
            break
        done += [o for o in failed if o.item.kind != "alias"]
        todo = retry
    return done


def _write(env: Env, actor: Actor, obj: p.Obj) -> None:
    if isinstance(obj, p.Domain):
        limits = dict(obj.limits) if obj.kind == "local" else None
        domains.add(
            env, actor, obj.name, kind=obj.kind, alias_of=obj.alias_of,
            transport=obj.transport, limits=limits,
        )  # fmt: skip
        if not obj.active:
            domains.update(env, actor, obj.name, {"active": False})
    elif isinstance(obj, p.Mailbox):
        _write_mailbox(env, actor, obj)
    elif isinstance(obj, p.Alias):
        aliases.add(env, actor, obj.source, obj.destinations)
    elif isinstance(obj, p.Forward):
        forwards.replace(env, actor, obj.address, obj.destinations, keep_copy=obj.keep_copy)
    else:
        vacation.set_vacation(
            env, actor, obj.address, subject=obj.subject, body=obj.body,
            starts_at=obj.starts_at, ends_at=obj.ends_at,
            interval=obj.interval or vacation.DEFAULT_INTERVAL,
        )  # fmt: skip


def _write_mailbox(env: Env, actor: Actor, box: p.Mailbox) -> None:
    settings = {
        "name": box.name,
        "quota_bytes": box.quota_bytes,
        "quota_messages": box.quota_messages,
    }
    if isinstance(box.password, Kept):
        mailboxes.add(
            env, actor, box.address, password_hash=box.password.stored,
            settings=settings, active=box.active,
        )  # fmt: skip
    elif isinstance(box.password, Clear):
        mailboxes.add(env, actor, box.address, password=box.password.password,
                      settings=settings, active=box.active)  # fmt: skip
    else:
        raise UsageError(f"{box.address}: unsupported password hash, not imported")
