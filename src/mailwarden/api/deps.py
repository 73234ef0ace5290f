"""What every route module shares: the caller as a FastAPI dependency, the parameter
types, and the response helpers (``one`` with its ETag, ``listed`` for pages).

Who calls it: the ``api.routes_*`` modules, ``api.app``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from mailwarden.api import auth
from mailwarden.ops.base import Actor, Env, Page, etag

BASE = "/api/v1"


def client_of(request: Request) -> str:
    return request.client.host if request.client else "-"


def admin_actor(request: Request) -> Actor:
    """Dependency of every admin route: the bearer token's actor."""
    actor = auth.bearer(
        request.app.state.env,
        request.app.state.throttle,
        request.headers.get("authorization"),
        client_of(request),
    )
    request.state.actor = actor.who
    return actor


def user_actor(request: Request) -> Actor:
    """Dependency of the ``/me`` routes: the mailbox login's actor."""
    actor = auth.mailbox(
        request.app.state.env,
        request.app.state.throttle,
        request.headers.get("authorization"),
        client_of(request),
    )
    request.state.actor = actor.who
    return actor


def env_of(request: Request) -> Env:
    env: Env = request.app.state.env
    return env


Admin = Annotated[Actor, Depends(admin_actor)]
User = Annotated[Actor, Depends(user_actor)]
Ops = Annotated[Env, Depends(env_of)]
IfMatch = Annotated[str | None, Header(alias="If-Match")]
Cursor = Annotated[str | None, Query(max_length=2000)]
Limit = Annotated[int | None, Query(ge=1, le=1000)]


def one(
    record: dict[str, Any],
    status: int = 200,
    location: str | None = None,
    *,
    tag: str | None = None,
) -> JSONResponse:
    headers = {"ETag": tag or etag(record)}
    if location:
        headers["Location"] = location
    return JSONResponse(record, status_code=status, headers=headers)


def listed(page: Page) -> dict[str, Any]:
    return {"items": page.items, "next_cursor": page.next_cursor}


def given(model: Any) -> dict[str, Any]:
    return {k: v for k, v in model.model_dump(exclude_unset=True).items() if v is not None}
