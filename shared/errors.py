"""A small error hierarchy shared by both services.

Every error carries a stable ``code`` (documented in docs/errors.md) and a message a person can act on.
Transports translate these in one place each: the HTTP error middleware and the AMQP consumer wrapper.
"""

from __future__ import annotations


class SfconnectError(Exception):
    """Base of every error this project raises on purpose."""

    code: str = "internal_error"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class PermanentError(SfconnectError):
    """Trying again will not help: the request, the org or the configuration must change first."""


class RetryableError(SfconnectError):
    """A passing condition (outage, limit, propagation): the same request may succeed later."""

    retryable = True

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class InvalidInput(PermanentError):
    """Input that does not meet its contract (HTTP body, AMQP message, configuration)."""

    code = "invalid_input"


class NotFound(PermanentError):
    code = "not_found"


class Conflict(PermanentError):
    code = "conflict"


class ConfigurationError(PermanentError):
    """Settings that make the process unable to start; reported as one clear line."""

    code = "invalid_configuration"
