"""The Manager's typed errors; each has a stable ``code`` the HTTP middleware maps to a problem type."""

from __future__ import annotations

from shared.errors import Conflict, InvalidInput, NotFound, PermanentError, RetryableError


class ConnectionNotFound(NotFound):
    code = "connection_not_found"


class IntegrationNotFound(NotFound):
    code = "integration_not_found"


class NameTaken(Conflict):
    code = "connection_name_taken"


class InvalidTransition(Conflict):
    """A state change the connection's lifecycle does not allow."""

    code = "invalid_state_transition"


class ConnectionNotActive(Conflict):
    code = "connection_not_active"


class ConcurrentUpdate(Conflict):
    """The document changed since it was read (compare-and-set on ``version`` lost)."""

    code = "concurrent_update"


class IdempotencyKeyReused(InvalidInput):
    """The same Idempotency-Key came with a different request body."""

    code = "idempotency_key_reused"


class IdempotencyKeyInProgress(Conflict):
    """Another request with this Idempotency-Key holds it; ``retry_after`` (seconds) goes to Retry-After."""

    code = "idempotency_key_in_progress"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BuilderUnavailable(RetryableError):
    """The Builder did not answer in time, the broker is unreachable, or Salesforce is (for now)."""

    code = "builder_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, cause: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.cause = cause


class StoreUnavailable(RetryableError):
    """MongoDB cannot be reached right now."""

    code = "database_unavailable"


class TokenRefreshFailed(PermanentError):
    """The Builder answered a refresh with a failure; ``cause`` is the Builder's error code."""

    code = "token_refresh_failed"

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class Unauthenticated(PermanentError):
    code = "unauthenticated"


class InsufficientScope(PermanentError):
    code = "insufficient_scope"
