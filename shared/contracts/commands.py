"""Commands: Manager → Builder on the ``sfconnect.commands`` exchange. Named by intent, imperative."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import EmailStr, Field

from shared.contracts.base import ConnectionId, Contract, KeyId

# Salesforce usernames are email-shaped but need not be deliverable (e.g. "ops+int@acme.com.sandbox").
USERNAME_PATTERN = r"^[^\s@]{1,64}@[^\s@]+\.[^\s@]+$"
ORG_ID_PATTERN = r"^00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$"


class AppKind(StrEnum):
    AUTO = "auto"
    EXTERNAL_CLIENT_APP = "external_client_app"
    CONNECTED_APP = "connected_app"


class CreateConnection(Contract):
    """Create the OAuth client app for a connection in the org, pre-authorize the user, mint a token."""

    message_type: ClassVar[str] = "connection.create.v1"
    routing_key: ClassVar[str] = "connection.create"
    summary: ClassVar[str] = "Create an OAuth client app for a connection and mint its first access token."

    connection_id: ConnectionId
    org_id: str = Field(pattern=ORG_ID_PATTERN, description="15 or 18 character Salesforce org id.")
    salesforce_username: str = Field(min_length=3, max_length=80, pattern=USERNAME_PATTERN)
    admin_email: EmailStr
    label: str = Field(min_length=1, max_length=80)
    app_kind: AppKind = AppKind.AUTO
    recipient_key_id: KeyId


class RefreshConnectionToken(Contract):
    """Mint a fresh access token for an existing connection with its stored key."""

    message_type: ClassVar[str] = "connection.refresh_token.v1"
    routing_key: ClassVar[str] = "connection.refresh_token"
    summary: ClassVar[str] = "Mint a new access token for an existing connection."

    connection_id: ConnectionId
    recipient_key_id: KeyId


class DeleteConnection(Contract):
    """Delete the connection's app and permission set in the org, revoke its tokens, forget its key."""

    message_type: ClassVar[str] = "connection.delete.v1"
    routing_key: ClassVar[str] = "connection.delete"
    summary: ClassVar[str] = "Remove a connection's app from the org and revoke its tokens."

    connection_id: ConnectionId


COMMANDS: tuple[type[Contract], ...] = (CreateConnection, RefreshConnectionToken, DeleteConnection)
