"""The wire format between the Manager and the Builder (DESIGN §3). The single source of truth."""

from shared.contracts.base import Contract, utcnow
from shared.contracts.codec import CONTENT_TYPE, REGISTRY, MalformedMessage, decode, encode
from shared.contracts.commands import (
    COMMANDS,
    AppKind,
    CreateConnection,
    DeleteConnection,
    RefreshConnectionToken,
)
from shared.contracts.errors import RETRYABLE_CODES, ErrorCode
from shared.contracts.replies import (
    REPLIES,
    AppSummary,
    CommandFailed,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionTokenRefreshed,
    ErrorDetail,
    SealedToken,
)

__all__ = [
    "COMMANDS",
    "CONTENT_TYPE",
    "REGISTRY",
    "REPLIES",
    "RETRYABLE_CODES",
    "AppKind",
    "AppSummary",
    "CommandFailed",
    "ConnectionCreated",
    "ConnectionDeleted",
    "ConnectionTokenRefreshed",
    "Contract",
    "CreateConnection",
    "DeleteConnection",
    "ErrorCode",
    "ErrorDetail",
    "MalformedMessage",
    "RefreshConnectionToken",
    "SealedToken",
    "decode",
    "encode",
    "utcnow",
]
