"""Request and response models of the HTTP API (pydantic); the OpenAPI document is built from them."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from manager.domain import CONNECTION_ID_PATTERN, Connection, ConnectionStatus, ErrorInfo
from manager.repository import Integration
from manager.tokens import TokenView
from shared.contracts import AppKind
from shared.contracts.commands import ORG_ID_PATTERN, USERNAME_PATTERN

SLUG = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"


def _first_bad_character(value: str, categories: frozenset[str]) -> str | None:
    """The first character of ``value`` in one of ``categories`` or a Unicode noncharacter, as U+XXXX."""
    for ch in value:
        code = ord(ch)
        if unicodedata.category(ch) in categories or 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
            return f"U+{code:04X}"
    return None


# Labels end up in Metadata API XML, which cannot carry control characters or noncharacters; usernames
# also refuse format characters (bidi overrides, zero-width spaces) that make two names look alike.
_LABEL_BAD = frozenset({"Cc", "Cs"})
_USERNAME_BAD = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class CreateConnectionRequest(_Request):
    """Ask for a new connection: which org, which user the API calls run as, who administers the app."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=SLUG,
        description="Unique slug (lower-case letters, digits, '-').",
    )
    admin_email: EmailStr = Field(max_length=254, description="Email address of the app's administrator.")
    salesforce_username: str = Field(
        min_length=3,
        max_length=80,
        pattern=USERNAME_PATTERN,
        description="The Salesforce username every API request runs as (email-shaped).",
    )
    org_id: str = Field(pattern=ORG_ID_PATTERN, description="15 or 18 character Salesforce org id (00D...).")
    label: str | None = Field(None, min_length=1, max_length=80, description="Display label (default: name).")
    app_kind: AppKind = Field(AppKind.AUTO, description="Which kind of OAuth app the Builder creates.")

    @field_validator("label")
    @classmethod
    def _printable_label(cls, v: str | None) -> str | None:
        if v is not None and (bad := _first_bad_character(v, _LABEL_BAD)):
            raise ValueError(f"the label holds a control character or noncharacter ({bad})")
        return v

    @field_validator("salesforce_username")
    @classmethod
    def _printable_username(cls, v: str) -> str:
        if bad := _first_bad_character(v, _USERNAME_BAD):
            raise ValueError(f"the username holds a control, format or unassigned character ({bad})")
        return v


class AssociateIntegrationRequest(_Request):
    """Bind an integration to the connection whose token it uses."""

    connection_id: str = Field(
        max_length=26,
        pattern=CONNECTION_ID_PATTERN,
        description="The connection's id as this API gave it out (con_ and 22 lower-case hex digits).",
    )


class ListConnectionsQuery(_Request):
    limit: int = Field(50, ge=1, le=200, description="Page size.")
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the previous page.")
    status: list[ConnectionStatus] | None = Field(
        None,
        max_length=5,
        description="Only connections in these states: comma-separated (`status=active,pending`) or "
        "repeated (`status=active&status=pending`); all states when absent. Keep the same value for "
        "every page of one listing.",
    )

    @field_validator("status", mode="before")
    @classmethod
    def _comma_separated(cls, v: object) -> object:
        values = [v] if isinstance(v, str) else v
        if isinstance(values, list) and all(isinstance(x, str) for x in values):
            return list(dict.fromkeys(part for x in values for part in x.split(",")))
        return v


class TokenQuery(_Request):
    force_refresh: bool = Field(False, description="Mint a new token first (after a 401 from Salesforce).")


class AppOut(_Response):
    kind: str
    full_name: str
    consumer_key: str


class ErrorOut(_Response):
    code: str
    message: str
    at: datetime


def _error(e: ErrorInfo | None) -> ErrorOut | None:
    return ErrorOut(code=e.code, message=e.message, at=e.at) if e else None


class ConnectionOut(_Response):
    """A connection as the API shows it: never a secret."""

    id: str
    name: str
    org_id: str
    salesforce_username: str
    admin_email: str
    label: str
    app_kind: str
    status: ConnectionStatus
    app: AppOut | None
    instance_url: str | None
    token_issued_at: datetime | None
    error: ErrorOut | None = Field(description="Why the create or the delete failed (Builder's code).")
    last_refresh_error: ErrorOut | None = Field(
        description="Why the last token refresh failed, when the Builder refused it; the connection stays "
        "active with its previous token. Cleared by the next successful refresh."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: Connection) -> ConnectionOut:
        return cls(
            id=c.id,
            name=c.name,
            org_id=c.org_id,
            salesforce_username=c.salesforce_username,
            admin_email=c.admin_email,
            label=c.label,
            app_kind=c.app_kind,
            status=c.status,
            app=AppOut(kind=c.app.kind, full_name=c.app.full_name, consumer_key=c.app.consumer_key)
            if c.app
            else None,
            instance_url=c.instance_url,
            token_issued_at=c.token.issued_at if c.token else None,
            error=_error(c.error),
            last_refresh_error=_error(c.last_refresh_error),
            created_at=c.created_at,
            updated_at=c.updated_at,
        )


class ConnectionPage(_Response):
    items: list[ConnectionOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next page; null at the end.")


class IntegrationOut(_Response):
    name: str
    connection_id: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, i: Integration) -> IntegrationOut:
        return cls(
            name=i.name, connection_id=i.connection_id, created_at=i.created_at, updated_at=i.updated_at
        )


class TokenOut(_Response):
    """The access token for generated code (the only response that carries a secret)."""

    access_token: str
    instance_url: str
    token_type: Literal["Bearer"] = "Bearer"
    issued_at: datetime

    @classmethod
    def of(cls, t: TokenView) -> TokenOut:
        return cls(access_token=t.access_token, instance_url=t.instance_url, issued_at=t.issued_at)


class Health(_Response):
    status: Literal["ok", "ready"]
    checks: dict[str, Literal["up", "down"]] = Field(default_factory=dict)


class FieldError(_Response):
    loc: list[str | int]
    msg: str
    type: str


class Problem(_Response):
    """RFC 9457 problem details; ``type`` is stable per ``code``."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str
    request_id: str | None = None
    errors: list[FieldError] | None = None
    checks: dict[str, Literal["up", "down"]] | None = Field(None, description="Readiness: each dependency.")
    cause: str | None = Field(
        None, description="The Builder's error code behind a 502/503, when it sent one."
    )
