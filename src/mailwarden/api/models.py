"""Request bodies of the REST API: the schema in the OpenAPI spec, unknown fields refused.

Every model forbids extra fields (``extra="forbid"``: a typo is 422, never silently
ignored); sizes and counts are whole numbers >= 0 (0 = unlimited). Responses are the
records of ``mailwarden.ops`` (plain JSON objects).

Who calls it: ``api.app``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Count = Field(default=None, ge=0, le=2**62)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DomainSettings(Strict):
    kind: Literal["local", "alias", "relay"] = "local"
    alias_of: str | None = Field(default=None, max_length=253)
    transport: str | None = Field(default=None, max_length=255)
    max_mailboxes: int | None = Count
    max_aliases: int | None = Count
    default_quota_bytes: int | None = Count
    max_message_bytes: int | None = Count
    active: bool | None = None


class DomainCreate(DomainSettings):
    name: str = Field(max_length=253)


class DomainUpdate(Strict):
    transport: str | None = Field(default=None, max_length=255)
    max_mailboxes: int | None = Count
    max_aliases: int | None = Count
    default_quota_bytes: int | None = Count
    max_message_bytes: int | None = Count
    active: bool | None = None


Service = Literal["mail", "calendar", "contacts"]


class MailboxUpdate(Strict):
    name: str | None = Field(default=None, max_length=255)
    quota_bytes: int | None = Count
    quota_messages: int | None = Count
    group: str | None = Field(default=None, max_length=64)
    services: list[Service] | None = Field(default=None, min_length=1, max_length=3)
    active: bool | None = None


class MailboxCreate(MailboxUpdate):
    address: str = Field(max_length=320)
    password: str | None = Field(default=None, min_length=1, max_length=1024)


class Password(Strict):
    password: str | None = Field(default=None, min_length=1, max_length=1024)


class AliasCreate(Strict):
    source: str = Field(max_length=320)
    destinations: list[str] = Field(min_length=1, max_length=1000)


class AliasUpdate(Strict):
    destinations: list[str] = Field(min_length=1, max_length=1000)


class Forwards(Strict):
    destinations: list[str] = Field(max_length=100)
    keep_copy: bool = False


class RelayCreate(Strict):
    network: str = Field(max_length=64)
    expires_in: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)
    note: str = Field(default="", max_length=255)


class TokenCreate(Strict):
    name: str = Field(max_length=64)
    role: Literal["admin", "domain-admin", "readonly"]
    domains: list[str] = Field(default_factory=list, max_length=1000)
    expires_in: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)


class GroupCreate(Strict):
    name: str = Field(max_length=64)
    imap: bool = True
    pop3: bool = True
    smtp: bool = True
    sieve: bool = True


class SendAsGrant(Strict):
    login: str = Field(max_length=320)
    address: str = Field(max_length=320)


class RateLimit(Strict):
    messages: int | None = Count
    recipients: int | None = Count


class SpamSettings(Strict):
    action: Literal["tag", "folder", "discard", "reject", "inherit"] | None = None
    threshold: float | Literal["inherit"] | None = None
    enforce: bool | None = None


class SpamListEntry(Strict):
    kind: Literal["allow", "block"]
    pattern: str = Field(max_length=320)


class Vacation(Strict):
    subject: str = Field(max_length=255)
    body: str = Field(max_length=65535)
    starts_at: int | None = Field(default=None, ge=0, le=2**40)
    ends_at: int | None = Field(default=None, ge=0, le=2**40)
    interval_seconds: int = Field(default=7 * 86400, gt=0, le=10 * 365 * 86400)


Address = Field(max_length=320)


class ListCreate(Strict):
    address: str = Address
    owners: list[str] = Field(min_length=1, max_length=100)
    moderated: bool = False
    subscribers_only: bool = True


class ListSubscribe(Strict):
    members: list[str] = Field(min_length=1, max_length=1000)
    mode: Literal["normal", "digest", "nomail"] = "normal"
    moderator: bool | None = None


class ListModerate(Strict):
    moderated: bool | None = None
    subscribers_only: bool | None = None
    add_moderators: list[str] = Field(default_factory=list, max_length=1000)
    remove_moderators: list[str] = Field(default_factory=list, max_length=1000)


class FetchAccountNew(Strict):
    """A fetch account of the caller's own mailbox (``/me/fetch``); ``password`` is
    write-only: stored encrypted, never returned."""

    protocol: Literal["pop3", "imap"]
    host: str = Field(min_length=1, max_length=253)
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024, pattern=r"^[^\x00\r\n]+$")
    port: int = Field(default=0, ge=0, le=65535)
    tls: Literal["tls", "starttls", "none"] = "tls"
    verify_cert: bool = True
    folder: str = Field(default="INBOX", max_length=255)
    keep: bool = True
    interval: int = Field(default=300, ge=60, le=7 * 86400)


class FetchAccountCreate(FetchAccountNew):
    mailbox: str = Address


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The one error shape: ``{"error": {"code": "...", "message": "..."}}``."""

    error: ErrorDetail


_ERRORS = {
    400: "malformed request (body is not JSON)",
    401: "no valid token or login",
    403: "the token's role may not do this",
    404: "no such object (or not in the token's domains)",
    409: "conflicts with an existing object",
    411: "a body needs a Content-Length",
    412: "If-Match does not match the current ETag",
    413: "body too large",
    415: "body is not application/json",
    422: "invalid values",
    429: "too many failed logins",
    503: "the database is unavailable",
}
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _ERRORS.items()
}
