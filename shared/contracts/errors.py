"""The stable error codes a CommandFailed reply carries (DESIGN §3). Documented in docs/errors.md."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    ORG_NOT_AUTHORIZED = "org_not_authorized"
    AUTHORIZATION_REVOKED = "authorization_revoked"
    USER_NOT_FOUND = "user_not_found"
    USER_INACTIVE = "user_inactive"
    INSUFFICIENT_PERMISSIONS = "insufficient_permissions"
    APP_CREATION_BLOCKED = "app_creation_blocked"
    APP_CREATION_FAILED = "app_creation_failed"
    PREAUTHORIZATION_FAILED = "preauthorization_failed"
    PROPAGATION_TIMEOUT = "propagation_timeout"
    SALESFORCE_UNAVAILABLE = "salesforce_unavailable"
    REQUEST_LIMIT_EXCEEDED = "request_limit_exceeded"
    INVALID_COMMAND = "invalid_command"
    CONNECTION_NOT_FOUND = "connection_not_found"
    INTERNAL_ERROR = "internal_error"


RETRYABLE_CODES = frozenset({ErrorCode.SALESFORCE_UNAVAILABLE, ErrorCode.REQUEST_LIMIT_EXCEEDED})
