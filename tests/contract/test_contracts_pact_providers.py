"""Pact provider verification: the messages the services' real producing code emits satisfy the consumers'
pacts.

The messages come from :func:`tests.contract.producers.produce`: the Manager's use cases (outbox for
CreateConnection / DeleteConnection, the token service's RPC for RefreshConnectionToken) and the Builder's
consumer with its real handlers and ``failure_reply``, run over fakes of their own ports, with only the
broker publish replaced by a recorder. Each interaction's message is what that code would have published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from pact import Verifier
from pact.types import Message as PactMessage

from shared.contracts import COMMANDS
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
from tests.contract.producers import TOPOLOGY, Produced, Published, produce

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def produced() -> Produced:
    return asyncio.run(produce())


def verifier(provider: str, messages: dict[str, Published], pact_file: Path) -> Verifier:
    handlers: dict[str, Callable[..., PactMessage] | PactMessage | bytes] = {
        name: producer(published.message) for name, published in messages.items()
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


def test_every_interaction_of_the_pacts_is_produced_by_the_services(produced: Produced) -> None:
    assert {i["description"] for i in pact_json(COMMANDS_PACT)["interactions"]} == set(produced.commands)
    assert {i["description"] for i in pact_json(REPLIES_PACT)["interactions"]} == set(produced.replies)
    assert {p.description for p in COMMAND_PACTS} == set(produced.commands)
    assert {p.description for p in REPLY_PACTS} == set(produced.replies)


def test_commands_go_to_the_commands_exchange_and_replies_to_the_queue_the_command_named(
    produced: Produced,
) -> None:
    routing = {c.message_type: c.routing_key for c in COMMANDS}
    for command in produced.commands.values():
        assert command.exchange == TOPOLOGY.commands_exchange
        assert command.routing_key == routing[str(command.message.type)]
    refresh = produced.commands["a refresh-connection-token command"].message
    assert refresh.reply_to == TOPOLOGY.rpc_queue("mgr-7")
    created = produced.commands["a create-connection command"].message
    assert created.reply_to == TOPOLOGY.replies_queue
    for description, reply in produced.replies.items():
        assert reply.exchange == "", description
        expected = refresh.reply_to if "refreshed" in description else TOPOLOGY.replies_queue
        assert reply.routing_key == expected, description
    answer = produced.replies["a connection-token-refreshed reply"].message
    assert answer.correlation_id == refresh.correlation_id == refresh.message_id


def test_the_manager_sends_commands_that_satisfy_the_builder_pact(produced: Produced) -> None:
    run(verifier(MANAGER, produced.commands, COMMANDS_PACT))


def test_the_builder_sends_replies_that_satisfy_the_manager_pact(produced: Produced) -> None:
    run(verifier(BUILDER, produced.replies, REPLIES_PACT))


def test_a_producer_that_breaks_the_contract_fails_verification(produced: Produced) -> None:
    broken = dict(produced.commands)
    # A refresh command offered where the Builder expects a delete: wrong type property, body it cannot use.
    broken["a delete-connection command"] = produced.commands["a refresh-connection-token command"]
    with pytest.raises(RuntimeError, match="verifier"):
        run(verifier(MANAGER, broken, COMMANDS_PACT))
