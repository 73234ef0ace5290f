"""Routes of tokens, the audit trail and ``/me`` (a mailbox's own password, forward,
vacation and spam settings, for a mailbox logged in with its password).

Thin: parse, call one ``mailwarden.ops`` function, map. Who calls it: ``api.app``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from mailwarden.api import models
from mailwarden.api.deps import BASE, Admin, Cursor, IfMatch, Limit, Ops, User, listed, one
from mailwarden.api.routes_policy import set_vacation
from mailwarden.errors import UsageError
from mailwarden.ops import (
    audit,
    forwards,
    mailboxes,
    quota,
    spam,
    tokens,
    vacation,
)

router = APIRouter(prefix=BASE, responses=models.ERROR_RESPONSES)


# --- tokens and audit ---------------------------------------------------------------------


@router.get("/tokens", tags=["tokens"])
def list_tokens(
    env: Ops, actor: Admin, cursor: Cursor = None, limit: Limit = None
) -> dict[str, Any]:
    return listed(tokens.page(env, actor, cursor=cursor, limit=limit))


@router.post("/tokens", status_code=201, tags=["tokens"])
def create_token(env: Ops, actor: Admin, body: models.TokenCreate) -> JSONResponse:
    created = tokens.create(
        env,
        actor,
        body.name,
        role=body.role,
        domain_names=body.domains,
        expires_in=body.expires_in,
    )
    record = {**created.record, "token": created.token}  # shown in this response only
    return JSONResponse(
        record, status_code=201, headers={"Location": f"{BASE}/tokens/{quote(body.name)}"}
    )


@router.get("/tokens/{name}", tags=["tokens"])
def get_token(env: Ops, actor: Admin, name: str) -> JSONResponse:
    return one(tokens.show(env, actor, name))


@router.delete("/tokens/{name}", status_code=204, tags=["tokens"])
def revoke_token(env: Ops, actor: Admin, name: str) -> Response:
    tokens.revoke(env, actor, name)
    return Response(status_code=204)


@router.get("/audit", tags=["audit"])
def list_audit(
    env: Ops,
    actor: Admin,
    *,
    cursor: Cursor = None,
    limit: Limit = None,
    domain: str | None = None,
    since: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    return listed(audit.page(env, actor, since=since, domain=domain, cursor=cursor, limit=limit))


# --- /me: a mailbox's own settings --------------------------------------------------------


@router.get("/me", tags=["me"])
def get_me(env: Ops, actor: User) -> JSONResponse:
    assert actor.mailbox is not None
    return one(mailboxes.show(env, actor, actor.mailbox))


@router.get("/me/quota", tags=["me"])
def get_my_quota(env: Ops, actor: User) -> JSONResponse:
    assert actor.mailbox is not None
    return one(quota.show(env, actor, actor.mailbox))


@router.put("/me/password", status_code=204, tags=["me"])
def put_my_password(env: Ops, actor: User, body: models.Password) -> Response:
    assert actor.mailbox is not None
    if body.password is None:
        raise UsageError("password: a new password is required")
    mailboxes.set_password(env, actor, actor.mailbox, password=body.password)
    return Response(status_code=204)


@router.get("/me/forward", tags=["me"])
def get_my_forward(env: Ops, actor: User) -> JSONResponse:
    assert actor.mailbox is not None
    return one(forwards.show(env, actor, actor.mailbox))


@router.put("/me/forward", tags=["me"])
def put_my_forward(
    env: Ops, actor: User, body: models.Forwards, if_match: IfMatch = None
) -> JSONResponse:
    assert actor.mailbox is not None
    record = forwards.replace(
        env, actor, actor.mailbox, body.destinations, keep_copy=body.keep_copy, if_match=if_match
    )
    return one(record)


@router.get("/me/vacation", tags=["me"])
def get_my_vacation(env: Ops, actor: User) -> JSONResponse:
    assert actor.mailbox is not None
    return one(vacation.show(env, actor, actor.mailbox))


@router.put("/me/vacation", tags=["me"])
def put_my_vacation(env: Ops, actor: User, body: models.Vacation) -> JSONResponse:
    assert actor.mailbox is not None
    return set_vacation(env, actor, actor.mailbox, body)


@router.delete("/me/vacation", status_code=204, tags=["me"])
def delete_my_vacation(env: Ops, actor: User) -> Response:
    assert actor.mailbox is not None
    vacation.off(env, actor, actor.mailbox)
    return Response(status_code=204)


@router.get("/me/spam", tags=["me"])
def get_my_spam(env: Ops, actor: User) -> JSONResponse:
    assert actor.mailbox is not None
    return one(spam.show(env, actor, actor.mailbox).record())


@router.put("/me/spam", tags=["me"])
def put_my_spam(env: Ops, actor: User, body: models.SpamSettings) -> JSONResponse:
    assert actor.mailbox is not None
    changes = body.model_dump(exclude_unset=True)
    return one(spam.set_settings(env, actor, actor.mailbox, changes).record())
