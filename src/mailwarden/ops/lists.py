"""Mailing-list operations: add, remove, show, list, subscribe, unsubscribe, members,
moderate, sync — each on the schema and on mlmmj's list directory together.

Rules: a list is ``name@domain`` of a local domain, the name path-safe and without the
recipient delimiter (mlmmj uses ``list+subscribe@``); the address is not a mailbox or an
alias (``store.lists.address_taken``); a list has at least one owner; a moderator is a
member. The SQL rows and the files change in one transaction: a failed file write rolls
the rows back.

Membership: people subscribe and unsubscribe by mail (mlmmj's ``list+subscribe@`` with
a confirmation round trip) and mlmmj drops addresses that bounce, so mlmmj's subscriber
files are the truth for who is a member. Every operation that reads or changes members
first mirrors those files into ``list_members`` (``_pull``), then changes both.

Who calls it: ``admin/lists.py`` (``mailwarden list``) and the REST API
(``api/routes_lists.py``).
Errors: see ``mailwarden.ops``; ``UsageError`` also for an unusable ``[lists]`` setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailwarden import address
from mailwarden.errors import UsageError
from mailwarden.lists import mlmmj
from mailwarden.ops.base import Actor, Env, change
from mailwarden.store import domains, lists
from mailwarden.store.db import Tx

Spool = mlmmj.Spool


def parse(env: Env, text: str) -> str:
    addr = address.parse_address(text, delimiter=env.delimiter)
    problem = mlmmj.local_part_problem(addr.local)
    if problem:
        raise UsageError(f"invalid list address {text!r}: {problem}")
    return str(addr)


def _addresses(env: Env, texts: Sequence[str]) -> list[str]:
    return list(
        dict.fromkeys(str(address.parse_address(t, delimiter=env.delimiter)) for t in texts)
    )


def _mode(mode: str) -> str:
    if mode not in lists.MODES:
        raise UsageError(f"invalid mode {mode!r}: one of {', '.join(lists.MODES)}")
    return mode


def _list(tx: Tx, actor: Actor, addr: str) -> lists.MailingList:
    actor.require_sees(addr.rpartition("@")[2], f"unknown list {addr!r}")
    return lists.require(tx, addr)


def record(tx: Tx, spool: Spool, ml: lists.MailingList) -> dict[str, Any]:
    members = lists.members(tx, ml.id)
    return {
        "address": ml.address,
        "domain": ml.domain,
        "owners": lists.owners(tx, ml.id),
        "moderated": ml.moderated,
        "subscribers_only": ml.subscribers_only,
        "moderators": [m.address for m in members if m.moderator],
        "members": len(members),
        "directory": str(spool.list_dir(ml.address)),
        "transport": f"mlmmj:{ml.domain}/{ml.local_part}",
    }


def _write(tx: Tx, spool: Spool, ml: lists.MailingList) -> None:
    """Rewrite the list's control files from its rows."""
    members = lists.members(tx, ml.id)
    spec = spool.spec(
        ml.address,
        lists.owners(tx, ml.id),
        moderated=ml.moderated,
        subscribers_only=ml.subscribers_only,
        moderators=[m.address for m in members if m.moderator],
    )
    mlmmj.write_control(spool, spec)


def _pull(tx: Tx, spool: Spool, ml: lists.MailingList) -> None:
    """Mirror mlmmj's subscriber files into ``list_members`` (see the module doc)."""
    lists.replace_members(tx, ml.id, mlmmj.read_members(spool, ml.address))


def add(
    env: Env,
    actor: Actor,
    spool: Spool,
    address_text: str,
    owners: Sequence[str],
    *,
    moderated: bool = False,
    subscribers_only: bool = True,
) -> dict[str, Any]:
    addr = parse(env, address_text)
    owner_list = _addresses(env, owners)
    if not owner_list:
        raise UsageError("give at least one --owner")
    local, _, domain_name = addr.rpartition("@")
    actor.require_sees(domain_name, f"unknown domain {domain_name!r}")
    with change(env, actor, "list.add", addr, domain_name) as ch:
        domain = domains.require_local(ch.tx, domain_name, "list")
        ml = lists.add(
            ch.tx,
            domain.id,
            local,
            addr,
            moderated=moderated,
            subscribers_only=subscribers_only,
        )
        lists.set_owners(ch.tx, ml.id, owner_list)
        mlmmj.create(
            spool,
            spool.spec(addr, owner_list, moderated=moderated, subscribers_only=subscribers_only),
        )
        _pull(ch.tx, spool, ml)  # a directory left by an earlier list of that name
        ch.after = record(ch.tx, spool, ml)
    assert ch.after is not None
    return ch.after


def remove(env: Env, actor: Actor, spool: Spool, address_text: str) -> str | None:
    """Remove the list; its directory is moved aside (returned), not deleted."""
    addr = parse(env, address_text)
    with change(env, actor, "list.remove", addr, addr.rpartition("@")[2]) as ch:
        ml = _list(ch.tx, actor, addr)
        _pull(ch.tx, spool, ml)
        ch.before = record(ch.tx, spool, ml)
        lists.remove(ch.tx, ml.id)
        moved = mlmmj.remove(spool, addr)
    return None if moved is None else str(moved)


def show(env: Env, actor: Actor, spool: Spool, address_text: str) -> dict[str, Any]:
    addr = parse(env, address_text)
    with env.db.transaction() as tx:
        ml = _list(tx, actor, addr)
        _pull(tx, spool, ml)
        return record(tx, spool, ml)


def all_lists(env: Env, actor: Actor, domain: str | None = None) -> list[dict[str, Any]]:
    if domain is not None:
        domain = address.normalize_domain(domain)
        actor.require_sees(domain, f"unknown domain {domain!r}")
    with env.db.read() as tx:
        found = lists.all_lists(tx, domain)
        return [
            {
                "address": ml.address,
                "owners": lists.owners(tx, ml.id),
                "moderated": ml.moderated,
                "subscribers_only": ml.subscribers_only,
                "members": len(lists.members(tx, ml.id)),
            }
            for ml in found
            if actor.sees(ml.domain)
        ]


def members(env: Env, actor: Actor, spool: Spool, address_text: str) -> list[dict[str, Any]]:
    addr = parse(env, address_text)
    with env.db.transaction() as tx:
        ml = _list(tx, actor, addr)
        _pull(tx, spool, ml)
        return [
            {"address": m.address, "mode": m.mode, "moderator": m.moderator}
            for m in lists.members(tx, ml.id)
        ]


def subscribe(
    env: Env,
    actor: Actor,
    spool: Spool,
    address_text: str,
    member_texts: Sequence[str],
    *,
    mode: str = "normal",
    moderator: bool | None = None,
) -> tuple[list[str], list[str]]:
    """Subscribe (or change the mode of) members, no confirmation asked: (added, changed)."""
    addr = parse(env, address_text)
    new = _addresses(env, member_texts)
    _mode(mode)
    added: list[str] = []
    changed: list[str] = []
    with change(env, actor, "list.subscribe", addr, addr.rpartition("@")[2]) as ch:
        ml = _list(ch.tx, actor, addr)
        _pull(ch.tx, spool, ml)
        ch.before = {"members": [m.address for m in lists.members(ch.tx, ml.id)]}
        for member in new:
            if member == addr:
                raise UsageError(f"{addr} cannot be a member of itself")
            old = lists.member(ch.tx, ml.id, member)
            flag = moderator if moderator is not None else bool(old and old.moderator)
            if lists.put_member(ch.tx, ml.id, lists.Member(member, mode, flag)):
                added.append(member)
            else:
                changed.append(member)
            mlmmj.add_member(spool, addr, member, mode)
        _write(ch.tx, spool, ml)
        ch.after = {"members": [m.address for m in lists.members(ch.tx, ml.id)]}
    return added, changed


def unsubscribe(
    env: Env, actor: Actor, spool: Spool, address_text: str, member_texts: Sequence[str]
) -> list[str]:
    """Unsubscribe members; return those that were members."""
    addr = parse(env, address_text)
    gone = _addresses(env, member_texts)
    removed: list[str] = []
    with change(env, actor, "list.unsubscribe", addr, addr.rpartition("@")[2]) as ch:
        ml = _list(ch.tx, actor, addr)
        _pull(ch.tx, spool, ml)
        ch.before = {"members": [m.address for m in lists.members(ch.tx, ml.id)]}
        for member in gone:
            in_files = mlmmj.remove_member(spool, addr, member)
            if lists.delete_member(ch.tx, ml.id, member) or in_files:
                removed.append(member)
        _write(ch.tx, spool, ml)
        ch.after = {"members": [m.address for m in lists.members(ch.tx, ml.id)]}
    return removed


def moderate(
    env: Env,
    actor: Actor,
    spool: Spool,
    address_text: str,
    *,
    moderated: bool | None = None,
    subscribers_only: bool | None = None,
    add_moderators: Sequence[str] = (),
    remove_moderators: Sequence[str] = (),
) -> dict[str, Any]:
    """Switch moderation / subscribers-only posting; flag or unflag moderators."""
    addr = parse(env, address_text)
    adding = _addresses(env, add_moderators)
    dropping = _addresses(env, remove_moderators)
    with change(env, actor, "list.moderate", addr, addr.rpartition("@")[2]) as ch:
        ml = _list(ch.tx, actor, addr)
        _pull(ch.tx, spool, ml)
        ch.before = record(ch.tx, spool, ml)
        lists.set_flags(ch.tx, ml.id, moderated=moderated, subscribers_only=subscribers_only)
        for member, flag in [(a, True) for a in adding] + [(d, False) for d in dropping]:
            old = lists.member(ch.tx, ml.id, member)
            if old is None:
                raise UsageError(f"{member} is not a member of {addr}; subscribe it first")
            lists.put_member(ch.tx, ml.id, lists.Member(member, old.mode, flag))
        ml = lists.require(ch.tx, addr)
        _write(ch.tx, spool, ml)
        ch.after = record(ch.tx, spool, ml)
    assert ch.after is not None
    return ch.after


def sync(env: Env, actor: Actor, spool: Spool, address_text: str | None = None) -> list[str]:
    """Re-create the directories and control files from the schema (after a change of
    ``[lists]``, a restore, or a hand edit); a missing directory gets its members from the
    schema, an existing one keeps mlmmj's. Return the lists written."""
    actor.require_admin("rewrite list directories")
    done: list[str] = []
    with env.db.transaction() as tx:
        targets = (
            [lists.require(tx, parse(env, address_text))] if address_text else lists.all_lists(tx)
        )
        for ml in targets:
            members_now = lists.members(tx, ml.id)
            existed = spool.list_dir(ml.address).is_dir()
            mlmmj.create(
                spool,
                spool.spec(
                    ml.address,
                    lists.owners(tx, ml.id),
                    moderated=ml.moderated,
                    subscribers_only=ml.subscribers_only,
                    moderators=[m.address for m in members_now if m.moderator],
                ),
            )
            if existed:
                _pull(tx, spool, ml)  # mlmmj's files hold the members
            else:
                for m in members_now:  # a lost directory: members back from the schema
                    mlmmj.add_member(spool, ml.address, m.address, m.mode)
            done.append(ml.address)
    return done
