"""Routes of the account objects: domains, mailboxes (and their quota usage), aliases,
forwards.

Thin: parse the request (``api.models``), call one ``mailwarden.ops`` function, map the
result (``api.deps.one`` / ``listed``). Who calls it: ``api.app`` includes ``router``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from mailwarden.api import models
from mailwarden.api.deps import BASE, Admin, Cursor, IfMatch, Limit, Ops, given, listed, one
from mailwarden.ops import aliases, domains, forwards, mailboxes, quota
from mailwarden.ops.base import etag

router = APIRouter(prefix=BASE, responses=models.ERROR_RESPONSES)


# --- domains ------------------------------------------------------------------------------


@router.get("/domains", tags=["domains"])
def list_domains(
    env: Ops, actor: Admin, cursor: Cursor = None, limit: Limit = None, kind: str | None = None
) -> dict[str, Any]:
    return listed(domains.page(env, actor, cursor=cursor, limit=limit, kind=kind))


@router.post("/domains", status_code=201, tags=["domains"])
def create_domain(env: Ops, actor: Admin, body: models.DomainCreate) -> JSONResponse:
    values = given(body)
    name, kind = values.pop("name"), values.pop("kind", "local")
    alias_of, transport = values.pop("alias_of", None), values.pop("transport", None)
    active = values.pop("active", True)
    record = domains.add(
        env, actor, name, kind=kind, alias_of=alias_of, transport=transport, limits=values
    )
    if not active:
        record = domains.update(env, actor, record["name"], {"active": False})
    return one(record, 201, f"{BASE}/domains/{quote(record['name'])}")


@router.get("/domains/{name}", tags=["domains"])
def get_domain(env: Ops, actor: Admin, name: str) -> JSONResponse:
    return one(domains.show(env, actor, name))


@router.put("/domains/{name}", tags=["domains"])
def update_domain(
    env: Ops, actor: Admin, name: str, body: models.DomainUpdate, if_match: IfMatch = None
) -> JSONResponse:
    return one(domains.update(env, actor, name, given(body), if_match=if_match))


@router.delete("/domains/{name}", status_code=204, tags=["domains"])
def delete_domain(
    env: Ops, actor: Admin, name: str, force: bool = False, if_match: IfMatch = None
) -> Response:
    domains.remove(env, actor, name, force=force, if_match=if_match)
    return Response(status_code=204)


# --- mailboxes ----------------------------------------------------------------------------


@router.get("/mailboxes", tags=["mailboxes"])
def list_mailboxes(
    env: Ops,
    actor: Admin,
    *,
    cursor: Cursor = None,
    limit: Limit = None,
    domain: str | None = None,
    active: bool | None = None,
) -> dict[str, Any]:
    return listed(
        mailboxes.page(env, actor, cursor=cursor, limit=limit, domain=domain, active=active)
    )


@router.post("/mailboxes", status_code=201, tags=["mailboxes"])
def create_mailbox(env: Ops, actor: Admin, body: models.MailboxCreate) -> JSONResponse:
    values = given(body)
    addr, password = values.pop("address"), values.pop("password", None)
    group, active = values.pop("group", None), values.pop("active", True)
    added = mailboxes.add(
        env, actor, addr, password=password, settings=values, group=group, active=active
    )
    record = dict(added.record)
    if added.password is not None:
        record["password"] = added.password  # generated: shown in this response only
    location = f"{BASE}/mailboxes/{quote(added.record['address'])}"
    return one(record, 201, location, tag=etag(added.record))


@router.get("/mailboxes/{address}", tags=["mailboxes"])
def get_mailbox(env: Ops, actor: Admin, address: str) -> JSONResponse:
    return one(mailboxes.show(env, actor, address))


@router.put("/mailboxes/{address}", tags=["mailboxes"])
def update_mailbox(
    env: Ops, actor: Admin, address: str, body: models.MailboxUpdate, if_match: IfMatch = None
) -> JSONResponse:
    values = given(body)
    group = values.pop("group", None)
    record, _, _ = mailboxes.update(env, actor, address, values, group=group, if_match=if_match)
    return one(record)


@router.put(
    "/mailboxes/{address}/password",
    response_model=None,
    tags=["mailboxes"],
    responses={204: {"description": "password set"}},
)
def set_mailbox_password(env: Ops, actor: Admin, address: str, body: models.Password) -> Response:
    """Set the password given, or generate one (returned once, 200); 204 otherwise."""
    generated = mailboxes.set_password(env, actor, address, password=body.password)
    if generated is not None:
        return JSONResponse({"password": generated}, status_code=200)
    return Response(status_code=204)


@router.get("/mailboxes/{address}/quota", tags=["quota"])
def get_mailbox_quota(env: Ops, actor: Admin, address: str) -> JSONResponse:
    """Limits (0 = unlimited) and the last recorded usage (null = none yet)."""
    return one(quota.show(env, actor, address))


@router.get("/quota", tags=["quota"])
def list_quota(
    env: Ops,
    actor: Admin,
    *,
    cursor: Cursor = None,
    limit: Limit = None,
    domain: str | None = None,
    over: Annotated[
        float | None, Query(ge=0, le=1e9, description="only mailboxes at or above this percent")
    ] = None,
) -> dict[str, Any]:
    """Usage of every mailbox by address; ``percent`` is the higher of bytes and messages."""
    return listed(quota.page(env, actor, cursor=cursor, limit=limit, domain=domain, over=over))


@router.delete("/mailboxes/{address}", status_code=204, tags=["mailboxes"])
def delete_mailbox(env: Ops, actor: Admin, address: str, if_match: IfMatch = None) -> Response:
    mailboxes.remove(env, actor, address, if_match=if_match)
    return Response(status_code=204)


# --- aliases ------------------------------------------------------------------------------


@router.get("/aliases", tags=["aliases"])
def list_aliases(
    env: Ops, actor: Admin, cursor: Cursor = None, limit: Limit = None, domain: str | None = None
) -> dict[str, Any]:
    return listed(aliases.page(env, actor, cursor=cursor, limit=limit, domain=domain))


@router.post("/aliases", status_code=201, tags=["aliases"])
def create_alias(env: Ops, actor: Admin, body: models.AliasCreate) -> JSONResponse:
    record = aliases.add(env, actor, body.source, body.destinations)
    return one(record, 201, f"{BASE}/aliases/{quote(record['source'])}")


@router.get("/aliases/{source}", tags=["aliases"])
def get_alias(env: Ops, actor: Admin, source: str) -> JSONResponse:
    return one(aliases.show(env, actor, source))


@router.put("/aliases/{source}", tags=["aliases"], responses={201: {"description": "created"}})
def put_alias(
    env: Ops, actor: Admin, source: str, body: models.AliasUpdate, if_match: IfMatch = None
) -> JSONResponse:
    record, created = aliases.replace(env, actor, source, body.destinations, if_match=if_match)
    if created:
        return one(record, 201, f"{BASE}/aliases/{quote(record['source'])}")
    return one(record)


@router.delete("/aliases/{source}", status_code=204, tags=["aliases"])
def delete_alias(env: Ops, actor: Admin, source: str, if_match: IfMatch = None) -> Response:
    aliases.remove(env, actor, source, if_match=if_match)
    return Response(status_code=204)


# --- forwards -----------------------------------------------------------------------------


@router.get("/forwards/{address}", tags=["forwards"])
def get_forwards(env: Ops, actor: Admin, address: str) -> JSONResponse:
    return one(forwards.show(env, actor, address))


@router.put("/forwards/{address}", tags=["forwards"])
def put_forwards(
    env: Ops, actor: Admin, address: str, body: models.Forwards, if_match: IfMatch = None
) -> JSONResponse:
    record = forwards.replace(
        env, actor, address, body.destinations, keep_copy=body.keep_copy, if_match=if_match
    )
    return one(record)


@router.delete("/forwards/{address}", status_code=204, tags=["forwards"])
def delete_forwards(env: Ops, actor: Admin, address: str) -> Response:
    forwards.clear(env, actor, address)
    return Response(status_code=204)
