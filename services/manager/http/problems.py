"""Errors that only the HTTP transport raises (bad media type, bad JSON, schema violations)."""

from __future__ import annotations

from pydantic import ValidationError

from shared.errors import InvalidInput, RetryableError


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"


class InvalidJson(InvalidInput):
    code = "invalid_json"


class InvalidParameter(InvalidInput):
    code = "invalid_parameter"


class InvalidBody(InvalidInput):
    """The body could not be read as framed (it does not match its Content-Length or Transfer-Encoding)."""

    code = "invalid_body"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class RequestValidationFailed(InvalidInput):
    """The body or query did not match its schema; ``errors`` lists each field (never its value)."""

    code = "validation_failed"

    def __init__(self, what: str, exc: ValidationError) -> None:
        self.errors = [
            {
                "loc": [str(p) if not isinstance(p, int) else p for p in e["loc"]],
                "msg": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(body)" for e in self.errors)
        super().__init__(f"the {what} does not match its schema: {fields}")


class NotReady(RetryableError):
    """A dependency (database, broker) does not answer; ``checks`` says which."""

    code = "not_ready"

    def __init__(self, checks: dict[str, str]) -> None:
        down = ", ".join(name for name, state in checks.items() if state != "up")
        super().__init__(f"not ready: {down} down", retry_after=5)
        self.checks = checks
