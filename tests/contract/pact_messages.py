"""The message pacts between the Manager and the Builder, and the glue between Pact and AMQP messages.

Pact describes a message as a body plus a flat metadata map. Our metadata map is the AMQP message's
basic properties (AMQP names: ``message_id``, ``correlation_id``, ``reply_to``, ``type``, ``app_id``,
``delivery_mode``, ``timestamp`` in epoch seconds) plus its application headers (``x-…``). Each consumer
states only what it relies on. Pact files live in ``contracts/pacts/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiormq.abc
from aio_pika import IncomingMessage
from pact import match
from pact.types import Message as PactMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from shared.amqp.message import H_ATTEMPT, H_FIRST_ATTEMPT_AT
from shared.contracts import (
    CommandFailed,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionTokenRefreshed,
    Contract,
    CreateConnection,
    DeleteConnection,
    ErrorCode,
    RefreshConnectionToken,
)
from shared.contracts.base import CONNECTION_ID
from shared.contracts.commands import ORG_ID_PATTERN, USERNAME_PATTERN

PACT_DIR = Path(__file__).resolve().parents[2] / "contracts" / "pacts"
MANAGER = "sfconnect-manager"
BUILDER = "sfconnect-builder"
COMMANDS_PACT = PACT_DIR / f"{BUILDER}-{MANAGER}.json"
REPLIES_PACT = PACT_DIR / f"{MANAGER}-{BUILDER}.json"

UUID4 = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
ISO_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)$"
KEY_ID = r"^[A-Za-z0-9_-]{1,32}$"
B64URL = r"^[A-Za-z0-9_-]+$"
EXAMPLE_ID = "0b6f3c2e-8f1d-4c4e-9a57-2d3c1e0f9a11"


@dataclass(frozen=True)
class MessagePact:
    """One asynchronous message interaction: what the consumer relies on in one kind of message."""

    description: str
    model: type[Contract]
    body: dict[str, Any]
    metadata: dict[str, Any]


def _common_metadata(model: type[Contract], app_id: str) -> dict[str, Any]:
    return {
        "type": model.message_type,
        "app_id": app_id,
        "message_id": match.regex(EXAMPLE_ID, regex=UUID4),
        "correlation_id": match.str(EXAMPLE_ID),
        "delivery_mode": 2,
        "timestamp": match.int(1768469400),
    }


def _command_metadata(model: type[Contract], reply_to: str) -> dict[str, Any]:
    return {
        **_common_metadata(model, "manager"),
        "reply_to": match.str(reply_to),
        H_ATTEMPT: match.int(1),
        H_FIRST_ATTEMPT_AT: match.regex("2026-01-15T09:30:00+00:00", regex=ISO_UTC),
    }


CONNECTION = match.regex("conn-7f3a", regex=CONNECTION_ID.pattern)
SEALED = {"key_id": match.regex("m1", regex=KEY_ID), "ciphertext": match.regex("c2VhbGVk", regex=B64URL)}
INSTANCE_URL = match.regex("https://acme.my.salesforce.com/", regex=r"^https://[^\s/]+(/\S*)?$")
ISSUED_AT = match.regex("2026-01-15T09:30:00Z", regex=ISO_UTC)

COMMAND_PACTS: tuple[MessagePact, ...] = (
    MessagePact(
        "a create-connection command",
        CreateConnection,
        {
            "connection_id": CONNECTION,
            "org_id": match.regex("00D5g000004SxYzEAK", regex=ORG_ID_PATTERN),
            "salesforce_username": match.regex("integration@acme.example", regex=USERNAME_PATTERN),
            "admin_email": match.regex("admin@acme.example", regex=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
            "label": match.str("Acme ERP"),
            "app_kind": match.regex("auto", regex=r"^(auto|external_client_app|connected_app)$"),
            "recipient_key_id": match.regex("m1", regex=KEY_ID),
        },
        _command_metadata(CreateConnection, "manager.replies"),
    ),
    MessagePact(
        "a refresh-connection-token command",
        RefreshConnectionToken,
        {"connection_id": CONNECTION, "recipient_key_id": match.regex("m1", regex=KEY_ID)},
        _command_metadata(RefreshConnectionToken, "manager.rpc.manager-1"),
    ),
    MessagePact(
        "a delete-connection command",
        DeleteConnection,
        {"connection_id": CONNECTION},
        _command_metadata(DeleteConnection, "manager.replies"),
    ),
)

REPLY_PACTS: tuple[MessagePact, ...] = (
    MessagePact(
        "a connection-created reply",
        ConnectionCreated,
        {
            "connection_id": CONNECTION,
            "app": {
                "kind": match.regex("external_client_app", regex=r"^(external_client_app|connected_app)$"),
                "full_name": match.regex("sfc_conn_7f3a", regex=r"^[A-Za-z][A-Za-z0-9_]*$"),
                "consumer_key": match.str("3MVG9EXAMPLEKEY"),
            },
            "instance_url": INSTANCE_URL,
            "issued_at": ISSUED_AT,
            "sealed_token": SEALED,
        },
        _common_metadata(ConnectionCreated, "builder"),
    ),
    MessagePact(
        "a connection-token-refreshed reply",
        ConnectionTokenRefreshed,
        {
            "connection_id": CONNECTION,
            "instance_url": INSTANCE_URL,
            "issued_at": ISSUED_AT,
            "sealed_token": SEALED,
        },
        _common_metadata(ConnectionTokenRefreshed, "builder"),
    ),
    MessagePact(
        "a connection-deleted reply",
        ConnectionDeleted,
        {"connection_id": CONNECTION, "app_existed": match.bool(True)},
        _common_metadata(ConnectionDeleted, "builder"),
    ),
    MessagePact(
        "a command-failed reply",
        CommandFailed,
        {
            "connection_id": CONNECTION,
            "command_type": match.regex(
                "connection.create.v1", regex=r"^connection\.(create|refresh_token|delete)\.v\d+$"
            ),
            "error": {
                "code": match.regex(
                    "user_inactive", regex="^(" + "|".join(c.value for c in ErrorCode) + ")$"
                ),
                "message": match.str("User integration@acme.example is inactive."),
                "retryable": match.bool(False),
            },
        },
        _common_metadata(CommandFailed, "builder"),
    ),
)


def metadata_of(message: aio_pika.Message) -> dict[str, Any]:
    """The Pact metadata map of an AMQP message: basic properties plus application headers."""
    properties = {
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "reply_to": message.reply_to,
        "type": message.type,
        "app_id": message.app_id,
        "content_type": message.content_type,
        "delivery_mode": int(message.delivery_mode),
        "timestamp": int(message.timestamp.timestamp()) if message.timestamp else None,
    }
    return {k: v for k, v in {**properties, **message.headers}.items() if v is not None}


def producer(message: aio_pika.Message) -> PactMessage:
    """What a Pact provider verification gets from a message our code built."""
    return PactMessage(
        contents=message.body, metadata=metadata_of(message), content_type=message.content_type
    )


class SettledIncoming(IncomingMessage):
    """An incoming message with no channel behind it that records how the consumer settled it."""

    settled: str | None = None

    async def ack(self, multiple: bool = False) -> None:
        self.settled = "ack"

    async def reject(self, requeue: bool = False) -> None:
        self.settled = f"reject(requeue={requeue})"

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self.settled = f"nack(requeue={requeue})"


def incoming_from(body: object, metadata: dict[str, Any]) -> SettledIncoming:
    """Rebuild the message the consumer would receive from the broker out of a Pact body and metadata."""
    raw = body if isinstance(body, bytes) else str(body).encode("utf-8")
    stamp = metadata.get("timestamp")
    properties = spec.Basic.Properties(
        content_type=metadata.get("content_type") or metadata.get("contentType"),
        message_id=metadata.get("message_id"),
        correlation_id=metadata.get("correlation_id"),
        reply_to=metadata.get("reply_to"),
        message_type=metadata.get("type"),
        app_id=metadata.get("app_id"),
        delivery_mode=metadata.get("delivery_mode"),
        timestamp=datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, int) else None,
        headers={k: v for k, v in metadata.items() if k.startswith("x-")},
    )
    deliver = spec.Basic.Deliver(consumer_tag="pact", delivery_tag=1, exchange="", routing_key="pact")
    delivered = aiormq.abc.DeliveredMessage(
        delivery=deliver,
        header=ContentHeader(body_size=len(raw), properties=properties),
        body=raw,
        channel=None,  # type: ignore[arg-type]
    )
    return SettledIncoming(delivered, no_ack=False)


def pact_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
