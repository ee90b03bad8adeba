"""The ``components.schemas`` of the AsyncAPI document: payloads from the pydantic models, and the
schemas of the AMQP properties and headers our messages carry."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from shared.amqp import message as amqp_headers
from shared.contracts.commands import COMMANDS
from shared.contracts.errors import RETRYABLE_CODES, ErrorCode
from shared.contracts.examples import ERROR_MEANINGS
from shared.contracts.replies import REPLIES

SCHEMAS = "#/components/schemas/"
DECODE_REASONS = ("bad_content_type", "unknown_type", "too_large", "invalid_json", "schema_violation")


def _ref(path: str) -> dict[str, str]:
    return {"$ref": path}


def component_schemas() -> dict[str, Any]:
    """Every schema the document references, sorted by name."""
    _, top = models_json_schema(
        [(m, "validation") for m in (*COMMANDS, *REPLIES)], ref_template=SCHEMAS + "{model}"
    )
    schemas: dict[str, Any] = dict(sorted(top["$defs"].items()))
    codes = schemas["ErrorCode"]
    codes["description"] = "Stable error codes of CommandFailed. " + " ".join(
        f"`{c.value}`: {ERROR_MEANINGS[c]}" for c in ErrorCode
    )
    codes["x-retryable"] = sorted(c.value for c in RETRYABLE_CODES)
    schemas["MessageHeaders"] = _headers_schema()
    schemas["DeadLetterHeaders"] = _dead_letter_headers_schema()
    return schemas


def _headers_schema() -> dict[str, Any]:
    h = amqp_headers
    return {
        "type": "object",
        "description": "AMQP 0-9-1 basic properties (AMQP spelling) and the application headers of every message.",
        "required": ["message_id", "correlation_id", "type", "timestamp", "app_id", "content_type"],
        "properties": {
            "message_id": {"type": "string", "format": "uuid", "description": "uuid4, unique per publish."},
            "correlation_id": {
                "type": "string",
                "description": "The command's id (its first message_id); replies carry the command's.",
            },
            "reply_to": {"type": "string", "description": "Commands: the queue the reply goes to."},
            "type": {
                "type": "string",
                "description": "The versioned message type, e.g. connection.create.v1.",
            },
            "timestamp": {
                "type": "integer",
                "description": "Publication time, seconds since the epoch (UTC).",
            },
            "app_id": {"type": "string", "enum": ["manager", "builder"]},
            "content_type": {"type": "string", "const": "application/json"},
            "content_encoding": {"type": "string", "const": "utf-8"},
            "delivery_mode": {"type": "integer", "const": 2, "description": "Persistent."},
            h.H_REQUEST_ID: {"type": "string", "description": "The HTTP request that caused the message."},
            h.H_ATTEMPT: {
                "type": "integer",
                "minimum": 1,
                "description": "1 on first publish, +1 per delayed retry.",
            },
            h.H_FIRST_ATTEMPT_AT: {
                "type": "string",
                "format": "date-time",
                "description": "ISO-8601 UTC time of the first attempt; handlers derive deadlines from it.",
            },
        },
    }


def _dead_letter_headers_schema() -> dict[str, Any]:
    h = amqp_headers
    reasons = sorted({*DECODE_REASONS, "retries_exhausted", *(c.value for c in ErrorCode)})
    return {
        "allOf": [_ref(SCHEMAS + "MessageHeaders")],
        "type": "object",
        "description": "Headers added by our consumer when it dead-letters a message (the broker adds x-death "
        "when it dead-letters one itself, e.g. at the delivery limit).",
        "properties": {
            h.H_REASON: {"type": "string", "enum": reasons},
            h.H_DETAIL: {"type": "string", "maxLength": h.MAX_DETAIL_CHARS},
            h.H_SOURCE_QUEUE: {"type": "string"},
            h.H_ORIGINAL_MESSAGE_ID: {"type": "string"},
        },
    }
