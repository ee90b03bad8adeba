"""Salesforce's error shapes (REST arrays, OAuth JSON, SOAP faults) as typed errors.

Each error carries one of the stable codes of :class:`shared.contracts.ErrorCode` (or an adapter-internal
code that the handlers translate) and says whether trying again can help. No error message ever holds a
token, key or assertion: messages are built from Salesforce's error code and description only.
"""

from __future__ import annotations

import json
from typing import Any

from shared.contracts import ErrorCode
from shared.errors import PermanentError, RetryableError, SfconnectError
from shared.logging import redact_text

UNAVAILABLE_RETRY_SECONDS = 5.0
LIMIT_RETRY_SECONDS = 60.0


class SalesforceUnavailable(RetryableError):
    """5xx, timeouts, refused connections: Salesforce may answer later."""

    code = ErrorCode.SALESFORCE_UNAVAILABLE.value

    def __init__(self, message: str, *, retry_after: float = UNAVAILABLE_RETRY_SECONDS) -> None:
        super().__init__(message, retry_after=retry_after)


class RequestLimitExceeded(RetryableError):
    """The org spent its API request allowance (REQUEST_LIMIT_EXCEEDED)."""

    code = ErrorCode.REQUEST_LIMIT_EXCEEDED.value

    def __init__(self, message: str, *, retry_after: float = LIMIT_RETRY_SECONDS) -> None:
        super().__init__(message, retry_after=retry_after)


class InvalidSession(SfconnectError):
    """The access token was refused (INVALID_SESSION_ID): refresh once, then try the call again."""

    code = "invalid_session"


class OrgNotAuthorized(PermanentError):
    code = ErrorCode.ORG_NOT_AUTHORIZED.value


class AuthorizationRevoked(PermanentError):
    code = ErrorCode.AUTHORIZATION_REVOKED.value


class SalesforceApiError(PermanentError):
    """A refusal that will not change on its own; ``sf_code`` is Salesforce's own error code."""

    code = "salesforce_error"

    def __init__(self, message: str, *, sf_code: str = "", status: int = 0, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.sf_code = sf_code
        self.status = status


class ResponseTooLarge(SalesforceApiError):
    """A response body above the Builder's cap (``MAX_BODY_BYTES``): refused rather than truncated."""

    def __init__(self, operation: str, host: str | None, limit: int) -> None:
        super().__init__(
            f"Salesforce {operation} at {host} answered a body larger than {limit} bytes; the Builder "
            "refuses bodies above this size rather than read a truncated answer"
        )
        self.limit = limit


class OAuthError(SfconnectError):
    """An OAuth token endpoint refusal: ``error`` and ``description`` as Salesforce sent them."""

    code = "oauth_error"

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"Salesforce refused the token request: {error} ({description})")

    @property
    def unrecognised(self) -> bool:
        """True when the body was not an OAuth error answer (e.g. an HTML page from a proxy)."""
        return self.error.startswith("http_")


_PERMISSION_CODES = frozenset(
    {
        "INSUFFICIENT_ACCESS",
        "INSUFFICIENT_ACCESS_OR_READONLY",
        "API_DISABLED_FOR_ORG",
        "FUNCTIONALITY_NOT_ENABLED",
    }
)


def short_body(text: str, limit: int = 300) -> str:
    """A short, redacted excerpt of a response body for an error message."""
    text = " ".join(text.split())
    return redact_text(text[:limit])


def rest_error(status: int, body: str, *, operation: str) -> SfconnectError:
    """Translate a non-2xx REST response (JSON array of {message, errorCode}) into a typed error."""
    sf_code, message = "", ""
    try:
        data: Any = json.loads(body)
        first = data[0] if isinstance(data, list) and data else data
        if isinstance(first, dict):
            sf_code = str(first.get("errorCode") or first.get("error") or "")
            message = str(first.get("message") or first.get("error_description") or "")
    except (ValueError, TypeError, KeyError, IndexError):
        message = short_body(body)
    message = redact_text(message)
    where = f"Salesforce {operation}"
    if sf_code == "REQUEST_LIMIT_EXCEEDED":
        return RequestLimitExceeded(f"{where}: the org's API request limit is exhausted ({message})")
    if status >= 500 or status in (408, 429):
        return SalesforceUnavailable(f"{where} answered HTTP {status}: {message or 'no detail'}")
    if status == 401 or sf_code in ("INVALID_SESSION_ID", "INVALID_AUTH_HEADER"):
        return InvalidSession(f"{where}: session refused ({sf_code or status}: {message})")
    if sf_code in _PERMISSION_CODES:
        return SalesforceApiError(
            f"{where}: the authorizing user lacks a permission ({sf_code}: {message})",
            sf_code=sf_code,
            status=status,
            code=ErrorCode.INSUFFICIENT_PERMISSIONS.value,
        )
    return SalesforceApiError(
        f"{where} failed with HTTP {status} {sf_code}: {message}".rstrip(": "), sf_code=sf_code, status=status
    )


def oauth_error(status: int, body: str) -> SfconnectError:
    """Translate a token/revoke endpoint refusal ({"error", "error_description"})."""
    if status >= 500 or status == 429:
        return SalesforceUnavailable(f"Salesforce token endpoint answered HTTP {status}")
    try:
        data = json.loads(body)
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        description = str(data.get("error_description", "")) if isinstance(data, dict) else ""
    except ValueError:
        error, description = "", short_body(body, 120)
    if error == "rate_limit_exceeded":
        return RequestLimitExceeded(f"Salesforce token endpoint: {description or error}")
    return OAuthError(error or f"http_{status}", redact_text(description), status=status)


def soap_fault(fault_code: str, fault_string: str, *, operation: str) -> SfconnectError:
    """Translate a SOAP fault (``sf:INVALID_SESSION_ID`` and friends)."""
    code = fault_code.split(":", 1)[-1]
    text = redact_text(fault_string)
    if code == "INVALID_SESSION_ID":
        return InvalidSession(f"Metadata API {operation}: session refused")
    if code == "REQUEST_LIMIT_EXCEEDED":
        return RequestLimitExceeded(f"Metadata API {operation}: the org's API request limit is exhausted")
    if code in ("SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION"):
        return SalesforceUnavailable(f"Metadata API {operation}: {code}: {text}")
    if code in _PERMISSION_CODES:
        return SalesforceApiError(
            f"Metadata API {operation}: the authorizing user lacks a permission ({code}: {text})",
            sf_code=code,
            code=ErrorCode.INSUFFICIENT_PERMISSIONS.value,
        )
    return SalesforceApiError(f"Metadata API {operation} failed: {code}: {text}", sf_code=code)
