"""Routes of fetch accounts (``/fetch-accounts``, and ``/me/fetch`` for a mailbox's own):
list, create, show, delete — the same ``ops.fetch`` functions as ``mailwarden fetch``.

The remote password is write-only: accepted on create, encrypted at once with the key
file of ``[fetch] key_file`` (``fetch.secret``; created 0600 on the first account, as
``fetch add`` does) and never returned; the records of ``ops.fetch`` carry none, so
neither do the audit rows, and ``api.app`` never logs a body.

Thin: parse, call one ``mailwarden.ops.fetch`` function, map. Who calls it: ``api.app``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from mailwarden.api import models
from mailwarden.api.deps import BASE, Admin, Cursor, Limit, Ops, User, one
from mailwarden.api.routes_lists import page_after
from mailwarden.ops import fetch
from mailwarden.ops.base import Actor, Env

router = APIRouter(prefix=BASE, responses=models.ERROR_RESPONSES)


def _encrypt(request: Request, password: str) -> str:
    from mailwarden.fetch import secret

    key_file: str = request.app.state.fetch_key_file
    secret.ensure_key(key_file)
    return secret.encrypt(secret.load_key(key_file), password)


@router.get("/fetch-accounts", tags=["fetch accounts"])
def list_fetch_accounts(
    env: Ops, actor: Admin, cursor: Cursor = None, limit: Limit = None, mailbox: str | None = None
) -> dict[str, Any]:
    got = page_after(fetch.listing(env, actor, mailbox), "id", cursor, limit)
    return {"items": got.items, "next_cursor": got.next_cursor}


@router.post("/fetch-accounts", status_code=201, tags=["fetch accounts"])
def create_fetch_account(
    env: Ops, actor: Admin, request: Request, body: models.FetchAccountCreate
) -> JSONResponse:
    return _create(env, actor, request, body.mailbox, body)


def _create(
    env: Env, actor: Actor, request: Request, mailbox: str, body: models.FetchAccountNew
) -> JSONResponse:
    actor.require_write(self_service=True)  # before the key file is touched (ops: the rest)
    new = fetch.NewAccount(
        mailbox=mailbox,
        protocol=body.protocol,
        host=body.host,
        username=body.username,
        password_enc=_encrypt(request, body.password),
        port=body.port,
        tls=body.tls,
        verify_cert=body.verify_cert,
        folder=body.folder,
        keep=body.keep,
        interval=body.interval,
    )
    record = fetch.add(env, actor, new)
    where = "me/fetch" if actor.role == "user" else "fetch-accounts"
    return one(record, 201, f"{BASE}/{where}/{record['id']}")


AccountId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/fetch-accounts/{account_id}", tags=["fetch accounts"])
def get_fetch_account(env: Ops, actor: Admin, account_id: AccountId) -> JSONResponse:
    return one(fetch.show(env, actor, account_id))


@router.delete("/fetch-accounts/{account_id}", status_code=204, tags=["fetch accounts"])
def delete_fetch_account(env: Ops, actor: Admin, account_id: AccountId) -> Response:
    fetch.remove(env, actor, account_id)
    return Response(status_code=204)


# --- /me/fetch: a mailbox's own fetch accounts ---------------------------------------------


@router.get("/me/fetch", tags=["me"])
def list_my_fetch_accounts(
    env: Ops, actor: User, cursor: Cursor = None, limit: Limit = None
) -> dict[str, Any]:
    got = page_after(fetch.listing(env, actor, actor.mailbox), "id", cursor, limit)
    return {"items": got.items, "next_cursor": got.next_cursor}


@router.post("/me/fetch", status_code=201, tags=["me"])
def create_my_fetch_account(
    env: Ops, actor: User, request: Request, body: models.FetchAccountNew
) -> JSONResponse:
    assert actor.mailbox is not None
    return _create(env, actor, request, actor.mailbox, body)


@router.get("/me/fetch/{account_id}", tags=["me"])
def get_my_fetch_account(env: Ops, actor: User, account_id: AccountId) -> JSONResponse:
    return one(fetch.show(env, actor, account_id))


@router.delete("/me/fetch/{account_id}", status_code=204, tags=["me"])
def delete_my_fetch_account(env: Ops, actor: User, account_id: AccountId) -> Response:
    fetch.remove(env, actor, account_id)
    return Response(status_code=204)
