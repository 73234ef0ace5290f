"""The ASGI app of ``mailwarden api``: routes under ``/api/v1``, thin by design.

Each route parses its request (``api.models``), resolves the caller (``api.auth``: a
bearer token, or a mailbox login for ``/me``), calls one ``mailwarden.ops`` function and
maps its result: 201 + ``Location`` for a create, an ``ETag`` on every single object,
``If-Match`` honoured on updates and deletes (412 when stale), lists as
``{"items": [...], "next_cursor": ...}`` with ``?cursor=&limit=`` and filters. Errors go
through ``api.errors`` (one shape). Every request writes one line to the
``mailwarden.api.access`` logger: time, caller, method, path, status, milliseconds (never
a query string, header or body, so no secret reaches the log).

Requests with a body must be ``application/json`` (else 415) and at most
``MAX_BODY`` bytes (else 413).

Who calls it: ``admin/api.py`` (``mailwarden api``) and the tests (``create_app``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from mailwarden import __version__
from mailwarden.api import (
    auth,
    errors,
    routes_accounts,
    routes_admin,
    routes_fetch,
    routes_lists,
    routes_policy,
)
from mailwarden.api.deps import BASE, client_of
from mailwarden.config import FetchSettings, ListsSettings
from mailwarden.metrics import ApiMetrics
from mailwarden.ops.base import Env

MAX_BODY = 1024 * 1024
access_log = logging.getLogger("mailwarden.api.access")


def create_app(
    env: Env,
    throttle: auth.Throttle | None = None,
    metrics: ApiMetrics | None = None,
    *,
    lists: ListsSettings | None = None,
    fetch: FetchSettings | None = None,
) -> FastAPI:
    """The API app over ``env`` (database + mail settings); ``metrics``: count requests;
    ``lists`` / ``fetch``: the ``[lists]`` spool and the ``[fetch]`` key file."""
    app = FastAPI(
        title="mailwarden",
        version=__version__,
        openapi_url=f"{BASE}/openapi.json",
        docs_url=f"{BASE}/docs",
        redoc_url=None,
    )
    app.state.env = env
    app.state.throttle = throttle or auth.Throttle()
    app.state.metrics = metrics
    app.state.lists_settings = lists or ListsSettings()
    app.state.fetch_key_file = (fetch or FetchSettings()).key_file
    errors.install(app)
    for module in (routes_accounts, routes_policy, routes_admin, routes_lists, routes_fetch):
        app.include_router(module.router)
    app.middleware("http")(_guard_and_log)
    return app


async def _guard_and_log(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    started = time.monotonic()
    response = _refuse_body(request)
    if response is None:
        try:
            response = await call_next(request)
        except Exception as exc:  # noqa: BLE001 - one place: 500 in the one shape, logged
            response = errors.for_exception(exc)
    ms = (time.monotonic() - started) * 1000
    metrics: ApiMetrics | None = request.app.state.metrics
    if metrics is not None:
        metrics.requests.labels(request.method, f"{response.status_code // 100}xx").inc()
    who = getattr(request.state, "actor", None) or f"-@{client_of(request)}"
    access_log.info(
        "%s %s %s %d %.1fms",
        who,
        request.method,
        request.url.path,
        response.status_code,
        ms,
    )
    return response


def _refuse_body(request: Request) -> Response | None:
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        return errors.body(413, "too_large", f"request body larger than {MAX_BODY} bytes")
    if request.headers.get("transfer-encoding") and length is None:
        return errors.body(411, "length_required", "send a Content-Length")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if (length or "0") != "0" and ctype != "application/json":
        return errors.body(415, "unsupported_media_type", "send application/json")
    return None
