"""The CommandFailed reply for any error a handler raises (the consumer's ``failure_reply``)."""

from __future__ import annotations

from typing import Any

from shared.amqp import Delivery
from shared.contracts import RETRYABLE_CODES, CommandFailed, Contract, ErrorCode, ErrorDetail
from shared.errors import SfconnectError
from shared.logging import redact_text

_ERROR_CODES = {c.value for c in ErrorCode}
_ALIASES = {
    "propagation_pending": ErrorCode.PROPAGATION_TIMEOUT,
    "unknown_recipient_key": ErrorCode.INVALID_COMMAND,
    "invalid_input": ErrorCode.INVALID_COMMAND,
    # another delivery held the connection's lease through every retry: retryable, nothing went wrong
    "connection_busy": ErrorCode.SALESFORCE_UNAVAILABLE,
}


def failure_reply(message: Any, delivery: Delivery, error: SfconnectError) -> Contract | None:
    """The CommandFailed for any error: a stable code, an actionable message, whether retrying may help."""
    connection_id = getattr(message, "connection_id", None)
    if not connection_id:
        return None
    code = (
        ErrorCode(error.code)
        if error.code in _ERROR_CODES
        else _ALIASES.get(error.code, ErrorCode.INTERNAL_ERROR)
    )
    text = redact_text(error.message) or code.value
    if error.code == "database_unavailable":
        text = f"the Builder's database did not answer ({text}); the command may be sent again"
    elif error.code == "connection_busy":
        text = (
            f"connection {connection_id} was still being handled by another delivery of a command for it "
            f"after every retry ({text}); the command may be sent again once that one has finished"
        )
    elif code is ErrorCode.INTERNAL_ERROR:
        text = f"the Builder failed unexpectedly ({text}); the command may be sent again"
    return CommandFailed(
        connection_id=connection_id,
        command_type=getattr(message, "message_type", delivery.message_type or "unknown"),
        error=ErrorDetail(code=code, message=text[:2000], retryable=code in RETRYABLE_CODES),
    )
