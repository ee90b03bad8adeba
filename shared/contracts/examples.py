"""Documentation data about the contracts: one valid example per message and what each error code means.

Used by the AsyncAPI generator (examples in the document) and its tests; the examples are built through
the models, so they are valid by construction.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.contracts.base import Contract
from shared.contracts.commands import AppKind, CreateConnection, DeleteConnection, RefreshConnectionToken
from shared.contracts.errors import ErrorCode
from shared.contracts.replies import (
    AppSummary,
    CommandFailed,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionTokenRefreshed,
    ErrorDetail,
    SealedToken,
)

ERROR_MEANINGS: dict[ErrorCode, str] = {
    ErrorCode.ORG_NOT_AUTHORIZED: "The Builder holds no authorization for the org: an admin must authorize it.",
    ErrorCode.AUTHORIZATION_REVOKED: "The org's refresh token no longer works (invalid_grant): re-authorize.",
    ErrorCode.USER_NOT_FOUND: "No user with that Salesforce username exists in the org.",
    ErrorCode.USER_INACTIVE: "The user exists but is inactive.",
    ErrorCode.INSUFFICIENT_PERMISSIONS: "The authorizing admin may not create apps or assign permission sets.",
    ErrorCode.APP_CREATION_BLOCKED: "The org does not allow creating this kind of app (e.g. connected apps).",
    ErrorCode.APP_CREATION_FAILED: "Salesforce refused the app's metadata.",
    ErrorCode.PREAUTHORIZATION_FAILED: "The permission set could not be created or assigned to the user.",
    ErrorCode.PROPAGATION_TIMEOUT: "The new app never accepted a JWT bearer grant within the deadline.",
    ErrorCode.SALESFORCE_UNAVAILABLE: "Salesforce did not answer or answered 5xx (retryable).",
    ErrorCode.REQUEST_LIMIT_EXCEEDED: "The org's API request limit is reached (retryable).",
    ErrorCode.INVALID_COMMAND: "The command does not meet its contract.",
    ErrorCode.CONNECTION_NOT_FOUND: "The Builder has no record of this connection.",
    ErrorCode.INTERNAL_ERROR: "An unexpected error in the Builder.",
}

_SEALED = SealedToken(key_id="m1", ciphertext="BASE64URL_HPKE_ENC_AND_CIPHERTEXT")
_ISSUED = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
EXAMPLES: dict[type[Contract], Contract] = {
    CreateConnection: CreateConnection(
        connection_id="conn-7f3a",
        org_id="00D5g000004SxYzEAK",
        salesforce_username="integration@acme.example",
        admin_email="admin@acme.example",
        label="Acme ERP",
        app_kind=AppKind.AUTO,
        recipient_key_id="m1",
    ),
    RefreshConnectionToken: RefreshConnectionToken(connection_id="conn-7f3a", recipient_key_id="m1"),
    DeleteConnection: DeleteConnection(connection_id="conn-7f3a"),
    ConnectionCreated: ConnectionCreated(
        connection_id="conn-7f3a",
        app=AppSummary(
            kind=AppKind.EXTERNAL_CLIENT_APP, full_name="sfc_conn_7f3a", consumer_key="3MVG9EXAMPLEKEY"
        ),
        instance_url="https://acme.my.salesforce.com",  # type: ignore[arg-type]
        issued_at=_ISSUED,
        sealed_token=_SEALED,
    ),
    ConnectionTokenRefreshed: ConnectionTokenRefreshed(
        connection_id="conn-7f3a",
        instance_url="https://acme.my.salesforce.com",  # type: ignore[arg-type]
        issued_at=_ISSUED,
        sealed_token=_SEALED,
    ),
    ConnectionDeleted: ConnectionDeleted(connection_id="conn-7f3a", app_existed=True),
    CommandFailed: CommandFailed(
        connection_id="conn-7f3a",
        command_type=CreateConnection.message_type,
        error=ErrorDetail(code=ErrorCode.USER_INACTIVE, message="User integration@acme.example is inactive."),
    ),
}
