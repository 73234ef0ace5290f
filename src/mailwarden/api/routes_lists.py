"""Routes of mailing lists (``/lists``): list, create, show, delete; members (list,
subscribe, unsubscribe) and moderation — the same ``ops.lists`` functions as
``mailwarden list``, on the mlmmj spool of ``[lists]``.

Thin: parse, call one ``mailwarden.ops.lists`` function, map. The spool is built per
request from the settings (``api.app`` keeps them), so a machine without mlmmj's user
still serves every other route. Who calls it: ``api.app``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mailwarden import address as addresses
from mailwarden.api import models
from mailwarden.api.deps import BASE, Admin, Cursor, IfMatch, Limit, Ops, one
from mailwarden.config import ListsSettings
from mailwarden.errors import NotFound
from mailwarden.ops import lists
from mailwarden.ops.base import Page, check_etag, decode_cursor, page_size, paginate

router = APIRouter(prefix=BASE, responses=models.ERROR_RESPONSES)


def spool_of(request: Request) -> lists.Spool:
    settings: ListsSettings = request.app.state.lists_settings
    return lists.Spool.from_settings(settings)


def page_after(rows: list[dict[str, Any]], key: str, cursor: str | None, limit: int | None) -> Page:
    """A page of ``rows`` (sorted by ``key``) after the row the cursor names."""
    size = page_size(limit)
    after = decode_cursor(cursor)
    if after is not None:
        rows = [r for r in rows if _key(r[key]) > _key(after)]
    return paginate(rows[: size + 1], size, key)


def _key(value: Any) -> tuple[int, str]:
    text = str(value)
    return (int(text), "") if text.isdigit() else (0, text)


def _where(record: dict[str, Any]) -> str:
    return f"{BASE}/lists/{quote(record['address'])}"


@router.get("/lists", tags=["lists"])
def list_lists(
    env: Ops, actor: Admin, cursor: Cursor = None, limit: Limit = None, domain: str | None = None
) -> dict[str, Any]:
    rows = sorted(lists.all_lists(env, actor, domain), key=lambda r: str(r["address"]))
    got = page_after(rows, "address", cursor, limit)
    return {"items": got.items, "next_cursor": got.next_cursor}


@router.post("/lists", status_code=201, tags=["lists"])
def create_list(env: Ops, actor: Admin, request: Request, body: models.ListCreate) -> JSONResponse:
    record = lists.add(
        env,
        actor,
        spool_of(request),
        body.address,
        body.owners,
        moderated=body.moderated,
        subscribers_only=body.subscribers_only,
    )
    return one(record, 201, _where(record))


@router.get("/lists/{address}", tags=["lists"])
def get_list(env: Ops, actor: Admin, request: Request, address: str) -> JSONResponse:
    return one(lists.show(env, actor, spool_of(request), address))


@router.delete("/lists/{address}", status_code=204, tags=["lists"])
def delete_list(
    env: Ops, actor: Admin, request: Request, address: str, if_match: IfMatch = None
) -> Response:
    spool = spool_of(request)
    if if_match is not None:
        check_etag(lists.show(env, actor, spool, address), if_match, f"list {address}")
    lists.remove(env, actor, spool, address)
    return Response(status_code=204)


@router.get("/lists/{address}/members", tags=["lists"])
def list_members(
    env: Ops,
    actor: Admin,
    request: Request,
    address: str,
    *,
    cursor: Cursor = None,
    limit: Limit = None,
) -> dict[str, Any]:
    rows = sorted(lists.members(env, actor, spool_of(request), address), key=lambda r: r["address"])
    got = page_after(rows, "address", cursor, limit)
    return {"items": got.items, "next_cursor": got.next_cursor}


@router.post("/lists/{address}/members", tags=["lists"])
def subscribe(
    env: Ops, actor: Admin, request: Request, address: str, body: models.ListSubscribe
) -> dict[str, list[str]]:
    """Subscribe (or change the mode of) members, no confirmation mail: who was added,
    who was a member already (mode changed)."""
    added, changed = lists.subscribe(
        env,
        actor,
        spool_of(request),
        address,
        body.members,
        mode=body.mode,
        moderator=body.moderator,
    )
    return {"added": added, "changed": changed}


@router.delete("/lists/{address}/members/{member}", status_code=204, tags=["lists"])
def unsubscribe(env: Ops, actor: Admin, request: Request, address: str, member: str) -> Response:
    removed = lists.unsubscribe(env, actor, spool_of(request), address, [member])
    if not removed:
        who = addresses.parse_address(member, delimiter=env.delimiter)
        raise NotFound(f"{who} is not a member of {address}")
    return Response(status_code=204)


@router.put("/lists/{address}/moderation", tags=["lists"])
def moderate(
    env: Ops,
    actor: Admin,
    request: Request,
    address: str,
    *,
    body: models.ListModerate,
    if_match: IfMatch = None,
) -> JSONResponse:
    """Switch moderation / subscribers-only posting; flag or unflag moderators (members)."""
    spool = spool_of(request)
    if if_match is not None:
        check_etag(lists.show(env, actor, spool, address), if_match, f"list {address}")
    record = lists.moderate(
        env,
        actor,
        spool,
        address,
        moderated=body.moderated,
        subscribers_only=body.subscribers_only,
        add_moderators=body.add_moderators,
        remove_moderators=body.remove_moderators,
    )
    return one(record)
