"""Routes of the policy objects: relay networks, groups, send-as grants, rate limits,
spam settings and lists, vacation replies.

Thin: parse, call one ``mailwarden.ops`` function, map. Who calls it: ``api.app``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from mailwarden.api import models
from mailwarden.api.deps import BASE, Admin, Cursor, Limit, Ops, listed, one
from mailwarden.ops import groups, ratelimit, relay, sendas, spam, traffic, vacation
from mailwarden.ops.base import Actor, Env

router = APIRouter(prefix=BASE, responses=models.ERROR_RESPONSES)


# --- relay networks -----------------------------------------------------------------------


@router.get("/relay-networks", tags=["relay networks"])
def list_relay(
    env: Ops, actor: Admin, cursor: Cursor = None, limit: Limit = None, all: bool = False
) -> dict[str, Any]:
    return listed(relay.page(env, actor, cursor=cursor, limit=limit, include_expired=all))


@router.post("/relay-networks", status_code=201, tags=["relay networks"])
def create_relay(env: Ops, actor: Admin, body: models.RelayCreate) -> JSONResponse:
    added = relay.add(env, actor, body.network, expires_in=body.expires_in, note=body.note)
    record = added.record
    return one(record, 201, f"{BASE}/relay-networks/{quote(record['network'], safe='')}")


@router.get("/relay-networks/{network:path}", tags=["relay networks"])
def get_relay(env: Ops, actor: Admin, network: str) -> JSONResponse:
    return one(relay.show(env, actor, network))


@router.delete("/relay-networks/{network:path}", status_code=204, tags=["relay networks"])
def delete_relay(env: Ops, actor: Admin, network: str) -> Response:
    relay.remove(env, actor, network)
    return Response(status_code=204)


# --- groups, send-as, rate limits -------------------------------------------------------


@router.get("/groups", tags=["groups"])
def list_groups(env: Ops, actor: Admin) -> dict[str, Any]:
    return {"items": groups.list_all(env, actor), "next_cursor": None}


@router.post("/groups", status_code=201, tags=["groups"])
def create_group(env: Ops, actor: Admin, body: models.GroupCreate) -> JSONResponse:
    flags = body.model_dump(exclude={"name"})
    record = groups.add(env, actor, body.name, flags)
    return one(record, 201, f"{BASE}/groups/{quote(record['name'])}")


@router.delete("/groups/{name}", status_code=204, tags=["groups"])
def delete_group(env: Ops, actor: Admin, name: str) -> Response:
    groups.remove(env, actor, name)
    return Response(status_code=204)


@router.get("/send-as", tags=["send-as"])
def list_send_as(env: Ops, actor: Admin, login: str | None = None) -> dict[str, Any]:
    return {"items": sendas.list_grants(env, actor, login), "next_cursor": None}


@router.post("/send-as", status_code=201, tags=["send-as"])
def grant_send_as(env: Ops, actor: Admin, body: models.SendAsGrant) -> JSONResponse:
    record = sendas.grant(env, actor, body.login, body.address)
    where = f"{BASE}/send-as?login={quote(record['login'])}"
    return one(record, 201, where)


@router.delete("/send-as/{login}/{address}", status_code=204, tags=["send-as"])
def revoke_send_as(env: Ops, actor: Admin, login: str, address: str) -> Response:
    sendas.revoke(env, actor, login, address)
    return Response(status_code=204)


@router.get("/rate-limits", tags=["rate limits"])
def list_rate_limits(env: Ops, actor: Admin) -> dict[str, Any]:
    return {"items": ratelimit.list_limits(env, actor), "next_cursor": None}


@router.put("/rate-limits/{period}/{scope:path}", tags=["rate limits"])
def put_rate_limit(
    env: Ops, actor: Admin, period: str, scope: str, body: models.RateLimit
) -> JSONResponse:
    record = ratelimit.set_limit(
        env, actor, scope, period, messages=body.messages, recipients=body.recipients
    )
    return one(record)


@router.delete("/rate-limits/{period}/{scope:path}", status_code=204, tags=["rate limits"])
def delete_rate_limit(env: Ops, actor: Admin, period: str, scope: str) -> Response:
    ratelimit.remove(env, actor, scope, period)
    return Response(status_code=204)


# --- spam and vacation --------------------------------------------------------------------


@router.get("/spam/{scope}", tags=["spam"])
def get_spam(env: Ops, actor: Admin, scope: str) -> JSONResponse:
    return one(spam.show(env, actor, scope).record())


@router.put("/spam/{scope}", tags=["spam"])
def put_spam(env: Ops, actor: Admin, scope: str, body: models.SpamSettings) -> JSONResponse:
    return one(spam.set_settings(env, actor, scope, body.model_dump(exclude_unset=True)).record())


@router.get("/spam/{scope}/lists", tags=["spam"])
def get_spam_lists(env: Ops, actor: Admin, scope: str) -> dict[str, Any]:
    return {"items": spam.entries(env, actor, scope), "next_cursor": None}


@router.post(
    "/spam/{scope}/lists",
    status_code=201,
    tags=["spam"],
    responses={200: {"description": "moved from the other list"}},
)
def add_spam_entry(env: Ops, actor: Admin, scope: str, body: models.SpamListEntry) -> JSONResponse:
    got = spam.list_entry(env, actor, scope, body.kind, body.pattern)
    record = {"scope": got.scope, "kind": got.kind, "pattern": got.pattern, "before": got.before}
    return JSONResponse(record, status_code=201 if got.before is None else 200)


@router.delete("/spam/{scope}/lists", status_code=204, tags=["spam"])
def delete_spam_entry(
    env: Ops, actor: Admin, scope: str, pattern: Annotated[str, Query(max_length=320)]
) -> Response:
    spam.unlist(env, actor, scope, pattern)
    return Response(status_code=204)


def set_vacation(env: Env, actor: Actor, address: str, body: models.Vacation) -> JSONResponse:
    result = vacation.set_vacation(
        env,
        actor,
        address,
        subject=body.subject,
        body=body.body,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        interval=body.interval_seconds,
    )
    return one(result.record)


@router.get("/vacation", tags=["vacation"])
def list_vacations(env: Ops, actor: Admin) -> dict[str, Any]:
    return {"items": vacation.list_all(env, actor), "next_cursor": None}


@router.get("/vacation/{address}", tags=["vacation"])
def get_vacation(env: Ops, actor: Admin, address: str) -> JSONResponse:
    return one(vacation.show(env, actor, address))


@router.put("/vacation/{address}", tags=["vacation"])
def put_vacation(env: Ops, actor: Admin, address: str, body: models.Vacation) -> JSONResponse:
    return set_vacation(env, actor, address, body)


@router.delete("/vacation/{address}", status_code=204, tags=["vacation"])
def delete_vacation(env: Ops, actor: Admin, address: str) -> Response:
    vacation.off(env, actor, address)
    return Response(status_code=204)


@router.get("/traffic", tags=["traffic"])
def get_traffic(
    env: Ops,
    actor: Admin,
    since: Annotated[str, Query(max_length=10, description="first UTC day, YYYY-MM-DD")],
    until: Annotated[str | None, Query(max_length=10, description="last UTC day")] = None,
    domain: str | None = None,
) -> dict[str, Any]:
    rows = traffic.report(env, actor, since=since, until=until, domain=domain)
    return {"items": rows, "next_cursor": None}
