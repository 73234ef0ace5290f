"""One place that maps errors onto HTTP: status code + ``{"error": {"code", "message"}}``.

| raised                      | status | code                |
|-----------------------------|--------|---------------------|
| ``NotFound``                | 404    | not_found           |
| ``Stale``                   | 412    | precondition_failed |
| ``Conflict``                | 409    | conflict            |
| ``UsageError``              | 422    | invalid             |
| ``Forbidden``               | 403    | forbidden           |
| ``Unauthorized`` (api.auth) | 401    | unauthorized        |
| ``Throttled`` (api.auth)    | 429    | throttled           |
| request validation          | 422    | invalid             |
| malformed JSON / body       | 400    | bad_request         |
| ``StoreUnavailable``        | 503    | unavailable         |
| anything else               | 500    | internal            |

Who calls it: ``api.app`` installs ``install(app)``. Messages are the one-line messages of
``mailwarden.errors`` (no secrets); a 500 says nothing but "internal error" and the
traceback goes to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailwarden.errors import (
    Conflict,
    Forbidden,
    MailwardenError,
    NotFound,
    Stale,
    StoreUnavailable,
    UsageError,
)

log = logging.getLogger("mailwarden.api")


class Unauthorized(MailwardenError):
    """No credentials, or credentials that do not authenticate."""


class Throttled(MailwardenError):
    """Too many failed logins from this client or for this account."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_MAP: tuple[tuple[type[Exception], int, str], ...] = (
    (NotFound, 404, "not_found"),
    (Stale, 412, "precondition_failed"),
    (Conflict, 409, "conflict"),
    (UsageError, 422, "invalid"),
    (Forbidden, 403, "forbidden"),
    (Unauthorized, 401, "unauthorized"),
    (Throttled, 429, "throttled"),
    (StoreUnavailable, 503, "unavailable"),
)
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
_HTTP_CODES |= {415: "unsupported_media_type", 401: "unauthorized", 412: "precondition_failed"}


def body(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def for_exception(exc: Exception) -> JSONResponse:
    for kind, status, code in _MAP:
        if isinstance(exc, kind):
            headers: dict[str, str] = {}
            if isinstance(exc, Unauthorized):
                headers["WWW-Authenticate"] = 'Bearer realm="mailwarden"'
            if isinstance(exc, Throttled):
                headers["Retry-After"] = str(exc.retry_after)
            return body(status, code, str(exc), headers or None)
    log.exception("internal error: %s", type(exc).__name__)
    return body(500, "internal", "internal error")


def install(app: FastAPI) -> None:
    async def on_mailwarden(request: Request, exc: Exception) -> Any:
        return for_exception(exc)

    async def on_validation(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return body(400, "bad_request", "the request body is not valid JSON")
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return body(422, "invalid", f"{where or 'request'}: {first.get('msg', 'invalid')}")

    async def on_http(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "error")
        return body(exc.status_code, code, str(exc.detail), dict(exc.headers or {}) or None)

    app.add_exception_handler(MailwardenError, on_mailwarden)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_mailwarden)
