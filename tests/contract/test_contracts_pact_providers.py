"""Pact provider verification: the messages our producing code builds satisfy the consumers' pacts.

The producing side is the code that builds what the publisher sends (``shared.amqp.command_message`` /
``reply_message``, used by ``Publisher.send_command`` / ``send_reply``) applied to real contract models;
the sealed token is sealed by the real HPKE code. The Builder and Manager may swap in their own producers
(handler → reply, use case → command) through ``COMMAND_PRODUCERS`` / ``REPLY_PRODUCERS``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from pact import Verifier
from pact.types import Message as PactMessage

from shared.amqp import Topology, command_message, reply_message
from shared.contracts import (
    AppKind,
    AppSummary,
    CommandFailed,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionTokenRefreshed,
    CreateConnection,
    DeleteConnection,
    ErrorCode,
    ErrorDetail,
    RefreshConnectionToken,
    SealedToken,
)
from shared.sealing import Sealer, generate_recipient_key
from tests.contract.pact_messages import (
    BUILDER,
    COMMAND_PACTS,
    COMMANDS_PACT,
    MANAGER,
    REPLIES_PACT,
    REPLY_PACTS,
    pact_json,
    producer,
)

pytestmark = pytest.mark.contract

TOPOLOGY = Topology()
CONNECTION_ID = "conn-b41c"
_, PUBLIC_KEY = generate_recipient_key("m2")
SEALER = Sealer.parse([PUBLIC_KEY])


def _sealed(message_type: str) -> SealedToken:
    token = "00D5g000004SxYz!AQ4AQFakeButTokenShaped.access-token-value"
    return SealedToken(
        key_id="m2",
        ciphertext=SEALER.seal(token, key_id="m2", connection_id=CONNECTION_ID, message_type=message_type),
    )


def _command(cmd: Any, reply_to: str) -> aio_pika.Message:
    return command_message(cmd, app_id="manager", reply_to=reply_to, request_id=f"req-{uuid.uuid4().hex[:8]}")


def _reply(reply: Any) -> aio_pika.Message:
    return reply_message(reply, app_id="builder", correlation_id=str(uuid.uuid4()), request_id="req-1")


COMMAND_PRODUCERS: dict[str, Callable[[], aio_pika.Message]] = {
    "a create-connection command": lambda: _command(
        CreateConnection(
            connection_id=CONNECTION_ID,
            org_id="00D000000000001",
            salesforce_username="ops+int@globex.com.sandbox",
            admin_email="it@globex.example",
            label="Globex billing",
            app_kind=AppKind.EXTERNAL_CLIENT_APP,
            recipient_key_id="m2",
        ),
        TOPOLOGY.replies_queue,
    ),
    "a refresh-connection-token command": lambda: _command(
        RefreshConnectionToken(connection_id=CONNECTION_ID, recipient_key_id="m2"),
        TOPOLOGY.rpc_queue("mgr-7"),
    ),
    "a delete-connection command": lambda: _command(
        DeleteConnection(connection_id=CONNECTION_ID), TOPOLOGY.replies_queue
    ),
}

REPLY_PRODUCERS: dict[str, Callable[[], aio_pika.Message]] = {
    "a connection-created reply": lambda: _reply(
        ConnectionCreated(
            connection_id=CONNECTION_ID,
            app=AppSummary(
                kind=AppKind.CONNECTED_APP, full_name="sfc_conn_b41c", consumer_key="3MVG9xyzABCDEFGH"
            ),
            instance_url="https://globex--dev.sandbox.my.salesforce.com",  # type: ignore[arg-type]
            issued_at=datetime.now(UTC),
            sealed_token=_sealed(ConnectionCreated.message_type),
        )
    ),
    "a connection-token-refreshed reply": lambda: _reply(
        ConnectionTokenRefreshed(
            connection_id=CONNECTION_ID,
            instance_url="https://globex.my.salesforce.com",  # type: ignore[arg-type]
            issued_at=datetime.now(UTC),
            sealed_token=_sealed(ConnectionTokenRefreshed.message_type),
        )
    ),
    "a connection-deleted reply": lambda: _reply(
        ConnectionDeleted(connection_id=CONNECTION_ID, app_existed=False)
    ),
    "a command-failed reply": lambda: _reply(
        CommandFailed(
            connection_id=CONNECTION_ID,
            command_type=RefreshConnectionToken.message_type,
            error=ErrorDetail(
                code=ErrorCode.SALESFORCE_UNAVAILABLE, message="Salesforce answered 503", retryable=True
            ),
        )
    ),
}


def verifier(provider: str, producers: dict[str, Callable[[], aio_pika.Message]], pact_file: Any) -> Verifier:
    handlers: dict[str, Callable[..., PactMessage] | PactMessage | bytes] = {
        name: (lambda make=make: producer(make())) for name, make in producers.items()
    }
    return (
        Verifier(provider).set_coloured_output(enabled=False).message_handler(handlers).add_source(pact_file)
    )


def run(verification: Verifier) -> None:
    """Verify, then close the message relay's listening socket.

    pact-python 4.2's relay server stops with ``shutdown()`` but never ``server_close()``; the leaked socket
    would surface as a ResourceWarning, an error under this project's ``filterwarnings = error``.
    """
    try:
        verification.verify()
    finally:
        server = getattr(getattr(verification, "_message_producer", None), "_server", None)
        if server is not None:
            server.server_close()


def test_every_interaction_of_the_pacts_has_a_producer() -> None:
    assert {i["description"] for i in pact_json(COMMANDS_PACT)["interactions"]} == set(COMMAND_PRODUCERS)
    assert {i["description"] for i in pact_json(REPLIES_PACT)["interactions"]} == set(REPLY_PRODUCERS)
    assert {p.description for p in COMMAND_PACTS} == set(COMMAND_PRODUCERS)
    assert {p.description for p in REPLY_PACTS} == set(REPLY_PRODUCERS)


def test_the_manager_sends_commands_that_satisfy_the_builder_pact() -> None:
    run(verifier(MANAGER, COMMAND_PRODUCERS, COMMANDS_PACT))


def test_the_builder_sends_replies_that_satisfy_the_manager_pact() -> None:
    run(verifier(BUILDER, REPLY_PRODUCERS, REPLIES_PACT))


def test_a_producer_that_breaks_the_contract_fails_verification() -> None:
    broken = dict(COMMAND_PRODUCERS)
    # A delete command that claims to be a create: wrong type property and a body the Builder cannot use.
    broken["a delete-connection command"] = lambda: _command(
        RefreshConnectionToken(connection_id="conn-1", recipient_key_id="m2"), TOPOLOGY.replies_queue
    )
    with pytest.raises(RuntimeError, match="verifier"):
        run(verifier(MANAGER, broken, COMMANDS_PACT))
