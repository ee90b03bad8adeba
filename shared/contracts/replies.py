"""Replies: Builder → Manager, past tense. Sent to the command's ``reply_to`` with its ``correlation_id``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, HttpUrl

from shared.contracts.base import ConnectionId, Contract, KeyId, UtcDatetime
from shared.contracts.commands import AppKind
from shared.contracts.errors import ErrorCode


class AppSummary(Contract):
    """The app created in the org (never a secret)."""

    message_type: ClassVar[str] = "app.summary"
    routing_key: ClassVar[str] = ""

    kind: AppKind = Field(description="external_client_app or connected_app (never auto).")
    full_name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    consumer_key: str = Field(min_length=8, max_length=256)


class SealedToken(Contract):
    """An access token sealed with HPKE to the Manager's key ``key_id``."""

    message_type: ClassVar[str] = "sealed.token"
    routing_key: ClassVar[str] = ""

    key_id: KeyId
    ciphertext: str = Field(min_length=1, max_length=8192, pattern=r"^[A-Za-z0-9_-]+$")


class ConnectionCreated(Contract):
    message_type: ClassVar[str] = "connection.created.v1"
    routing_key: ClassVar[str] = "connection.created"
    summary: ClassVar[str] = "The app exists, the user is pre-authorized, and here is a sealed access token."

    connection_id: ConnectionId
    app: AppSummary
    instance_url: HttpUrl
    issued_at: UtcDatetime
    sealed_token: SealedToken


class ConnectionTokenRefreshed(Contract):
    message_type: ClassVar[str] = "connection.token_refreshed.v1"
    routing_key: ClassVar[str] = "connection.token_refreshed"
    summary: ClassVar[str] = "A new sealed access token for the connection."

    connection_id: ConnectionId
    instance_url: HttpUrl
    issued_at: UtcDatetime
    sealed_token: SealedToken


class ConnectionDeleted(Contract):
    message_type: ClassVar[str] = "connection.deleted.v1"
    routing_key: ClassVar[str] = "connection.deleted"
    summary: ClassVar[str] = "The app and its permission set are gone and the tokens revoked."

    connection_id: ConnectionId
    app_existed: bool = True


class ErrorDetail(Contract):
    message_type: ClassVar[str] = "error.detail"
    routing_key: ClassVar[str] = ""

    code: ErrorCode
    message: str = Field(min_length=1, max_length=2000)
    retryable: bool = False


class CommandFailed(Contract):
    message_type: ClassVar[str] = "command.failed.v1"
    routing_key: ClassVar[str] = "command.failed"
    summary: ClassVar[str] = "The command could not be carried out; the error says why and whether to retry."

    connection_id: ConnectionId
    command_type: str = Field(description="The `type` of the command that failed, e.g. connection.create.v1.")
    error: ErrorDetail


REPLIES: tuple[type[Contract], ...] = (
    ConnectionCreated,
    ConnectionTokenRefreshed,
    ConnectionDeleted,
    CommandFailed,
)
