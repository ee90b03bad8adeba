"""Body encoding and decoding of contracts, independent of any AMQP client.

``decode`` never raises anything but :class:`MalformedMessage`, whose ``reason`` is a short stable
string that the consumer puts in the dead-letter header ``x-sfconnect-reason``.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from shared.contracts.base import Contract
from shared.contracts.commands import COMMANDS
from shared.contracts.replies import REPLIES
from shared.errors import InvalidInput

CONTENT_TYPE = "application/json"
MAX_BODY_BYTES = 64 * 1024

REGISTRY: dict[str, type[Contract]] = {m.message_type: m for m in (*COMMANDS, *REPLIES)}


class MalformedMessage(InvalidInput):
    """A message that can never be processed: it goes to the dead-letter queue, never loops."""

    code = "invalid_command"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def encode(model: Contract) -> bytes:
    return model.model_dump_json().encode("utf-8")


def decode(
    message_type: str | None,
    body: bytes,
    content_type: str | None = CONTENT_TYPE,
    *,
    accept: tuple[type[Contract], ...] | None = None,
) -> Contract:
    """Decode ``body`` as the contract named by ``message_type`` (optionally limited to ``accept``).

    A message without a content type is refused like a wrong one (``bad_content_type``): every publisher
    of ours sets it, so its absence means the message did not come from our code.
    """
    if content_type is None or not content_type.strip():
        raise MalformedMessage(
            "bad_content_type", f"the message has no content_type (expected {CONTENT_TYPE})"
        )
    if content_type.split(";")[0].strip().lower() != CONTENT_TYPE:
        raise MalformedMessage("bad_content_type", f"content_type {content_type!r} is not {CONTENT_TYPE}")
    model = REGISTRY.get(message_type or "")
    if model is None or (accept is not None and model not in accept):
        raise MalformedMessage("unknown_type", f"message type {message_type!r} is not handled here")
    if len(body) > MAX_BODY_BYTES:
        raise MalformedMessage("too_large", f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage("invalid_json", f"body is not UTF-8 JSON ({type(exc).__name__})") from None
    except RecursionError:  # deeply nested arrays/objects under the size limit
        raise MalformedMessage("invalid_json", "body nests too deeply") from None
    except ValueError:  # e.g. an integer of more than 4300 digits (int's conversion limit)
        raise MalformedMessage("invalid_json", "body holds a number too long to read") from None
    if not isinstance(data, dict):
        raise MalformedMessage("invalid_json", "body is not a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise MalformedMessage("schema_violation", f"{model.message_type}: {fields}") from None
