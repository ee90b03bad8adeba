"""Mapping between contracts and AMQP messages: body, properties (DESIGN §3) and our headers.

Every message carries ``message_id`` (uuid4, unique per publish), ``correlation_id`` (the command's id),
``type`` (the contract's versioned name), ``timestamp`` (UTC), ``app_id``, ``content_type`` and, for
commands and replies, ``delivery_mode=2``. Headers: ``x-request-id``, ``x-sfconnect-attempt``,
``x-sfconnect-first-attempt-at``; dead letters sent by our code add ``x-sfconnect-reason`` and
``x-sfconnect-detail``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode

from shared.contracts import CONTENT_TYPE, Contract, decode, encode

H_REQUEST_ID = "x-request-id"
H_ATTEMPT = "x-sfconnect-attempt"
H_FIRST_ATTEMPT_AT = "x-sfconnect-first-attempt-at"
H_REASON = "x-sfconnect-reason"
H_DETAIL = "x-sfconnect-detail"
H_SOURCE_QUEUE = "x-sfconnect-source-queue"
H_ORIGINAL_MESSAGE_ID = "x-sfconnect-original-message-id"
# Headers the broker adds on dead-lettering and redelivery; never copied onto a message we publish again.
BROKER_HEADERS = frozenset(
    {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-delivery-count",
    }
)
MAX_DETAIL_CHARS = 1000


def new_message_id() -> str:
    """A fresh uuid4 string: every publish needs its own (aiormq matches returns by message_id)."""
    return str(uuid.uuid4())


def to_message(
    contract: Contract,
    *,
    app_id: str,
    message_id: str | None = None,
    correlation_id: str | None = None,
    reply_to: str | None = None,
    request_id: str | None = None,
    attempt: int = 1,
    first_attempt_at: datetime | None = None,
    timestamp: datetime | None = None,
    persistent: bool = True,
    headers: Mapping[str, Any] | None = None,
) -> aio_pika.Message:
    """Build the AMQP message for ``contract`` with every property of DESIGN §3."""
    now = datetime.now(UTC)
    first = (first_attempt_at or now).astimezone(UTC)
    all_headers: dict[str, Any] = dict(headers or {})
    all_headers[H_ATTEMPT] = attempt
    all_headers[H_FIRST_ATTEMPT_AT] = first.isoformat()
    if request_id:
        all_headers[H_REQUEST_ID] = request_id
    return aio_pika.Message(
        body=encode(contract),
        content_type=CONTENT_TYPE,
        content_encoding="utf-8",
        delivery_mode=DeliveryMode.PERSISTENT if persistent else DeliveryMode.NOT_PERSISTENT,
        message_id=message_id or new_message_id(),
        correlation_id=correlation_id,
        reply_to=reply_to,
        type=contract.message_type,
        timestamp=(timestamp or now).astimezone(UTC),
        app_id=app_id,
        headers=all_headers,
    )


def command_message(
    command: Contract,
    *,
    app_id: str,
    reply_to: str,
    correlation_id: str | None = None,
    request_id: str | None = None,
    message_id: str | None = None,
) -> aio_pika.Message:
    """A command as the Manager publishes it: ``correlation_id`` defaults to its own ``message_id``."""
    mid = message_id or new_message_id()
    return to_message(
        command,
        app_id=app_id,
        message_id=mid,
        correlation_id=correlation_id or mid,
        reply_to=reply_to,
        request_id=request_id,
    )


def reply_message(
    reply: Contract, *, app_id: str, correlation_id: str | None, request_id: str | None = None
) -> aio_pika.Message:
    """A reply as the Builder publishes it, carrying the command's ``correlation_id``."""
    return to_message(reply, app_id=app_id, correlation_id=correlation_id, request_id=request_id)


@dataclass(frozen=True)
class Delivery:
    """What a handler learns about a message besides its body."""

    message_id: str | None
    correlation_id: str | None
    reply_to: str | None
    request_id: str | None
    message_type: str | None
    redelivered: bool
    attempt: int
    first_attempt_at: datetime
    timestamp: datetime | None
    app_id: str | None
    routing_key: str | None
    headers: dict[str, Any] = field(default_factory=dict)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


def _attempt(value: Any) -> int:
    if isinstance(value, bool):
        return 1
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 1
    return number if number >= 1 else 1


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _first_attempt_at(value: Any, fallback: datetime) -> datetime:
    text = _text(value)
    if text is not None:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return fallback
        return _aware(parsed) or fallback
    return fallback


def delivery_of(message: AbstractIncomingMessage) -> Delivery:
    """Read the properties and our headers of an incoming message; never raises on odd header values."""
    headers = dict(message.headers or {})
    timestamp = _aware(message.timestamp) if isinstance(message.timestamp, datetime) else None
    correlation_id = _text(message.correlation_id) or _text(message.message_id)
    return Delivery(
        message_id=_text(message.message_id),
        correlation_id=correlation_id,
        reply_to=_text(message.reply_to),
        request_id=_text(headers.get(H_REQUEST_ID)),
        message_type=_text(message.type),
        redelivered=bool(message.redelivered),
        attempt=_attempt(headers.get(H_ATTEMPT, 1)),
        first_attempt_at=_first_attempt_at(headers.get(H_FIRST_ATTEMPT_AT), timestamp or datetime.now(UTC)),
        timestamp=timestamp,
        app_id=_text(message.app_id),
        routing_key=_text(message.routing_key),
        headers=headers,
    )


def decode_message(
    message: AbstractIncomingMessage, accept: tuple[type[Contract], ...] | None = None
) -> Contract:
    """Decode the body as the contract named by ``type``; raises only ``MalformedMessage``."""
    return decode(message.type, message.body, message.content_type, accept=accept)


def copy_for_republish(
    message: AbstractIncomingMessage, *, extra_headers: Mapping[str, Any] | None = None
) -> aio_pika.Message:
    """A new message with the body and properties of ``message``, a fresh id, and broker headers removed."""
    headers = {k: v for k, v in (message.headers or {}).items() if k not in BROKER_HEADERS}
    headers.update(extra_headers or {})
    return aio_pika.Message(
        body=message.body,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=new_message_id(),
        correlation_id=message.correlation_id or message.message_id,
        reply_to=message.reply_to,
        type=message.type,
        timestamp=message.timestamp,
        app_id=message.app_id,
        headers=headers,
    )


def clip(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """Shorten header text so a dead-letter header never grows without bound."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
