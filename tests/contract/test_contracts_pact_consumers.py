"""Pact consumer side (V4 asynchronous messages): the Builder consumes commands, the Manager consumes replies.

Each test states what its consumer relies on, runs the consumer's decoding path (``shared.amqp``) on every
message of the pact, and writes the pact file to contracts/pacts/ for the provider verification.
"""

from __future__ import annotations

import pytest
from pact import Pact
from pact.error import PactVerificationError

from shared.amqp import decode_message, delivery_of
from shared.contracts import (
    COMMANDS,
    REPLIES,
    ConnectionCreated,
    ConnectionTokenRefreshed,
    Contract,
    MalformedMessage,
)
from tests.contract.pact_messages import (
    BUILDER,
    COMMAND_PACTS,
    COMMANDS_PACT,
    MANAGER,
    PACT_DIR,
    REPLIES_PACT,
    REPLY_PACTS,
    MessagePact,
    incoming_from,
    pact_json,
)

pytestmark = pytest.mark.contract


def build_pact(consumer: str, provider: str, messages: tuple[MessagePact, ...]) -> Pact:
    pact = Pact(consumer, provider).with_specification("V4")
    for message in messages:
        (
            pact.upon_receiving(message.description, "Async")
            .with_body(message.body, content_type="application/json")
            .with_metadata(message.metadata)
        )
    return pact


def builder_reads_command(body: object, metadata: dict[str, object]) -> Contract:
    """What the Builder's consumer does with a command before its handler runs."""
    incoming = incoming_from(body, metadata)
    delivery = delivery_of(incoming)
    command = decode_message(incoming, COMMANDS)
    assert delivery.reply_to, "a command names the queue for its reply"
    assert delivery.correlation_id, "a command carries its id for the reply"
    assert delivery.attempt >= 1
    assert delivery.first_attempt_at.utcoffset() is not None
    return command


def check_command(body: str | bytes | None, metadata: dict[str, object]) -> None:
    builder_reads_command(body, metadata)


def manager_reads_reply(body: object, metadata: dict[str, object]) -> Contract:
    """What the Manager's reply consumer / RPC client does with a reply before acting on it."""
    incoming = incoming_from(body, metadata)
    delivery = delivery_of(incoming)
    reply = decode_message(incoming, REPLIES)
    assert delivery.correlation_id, "replies are matched to commands by correlation_id"
    if isinstance(reply, ConnectionCreated | ConnectionTokenRefreshed):
        assert reply.sealed_token.key_id and reply.sealed_token.ciphertext
        assert reply.issued_at.utcoffset() is not None
    return reply


def test_the_builder_handles_every_command_it_expects_from_the_manager() -> None:
    pact = build_pact(BUILDER, MANAGER, COMMAND_PACTS)
    seen: list[type[Contract]] = []
    pact.verify(lambda body, metadata: seen.append(type(builder_reads_command(body, metadata))), "Async")
    assert sorted(m.__name__ for m in seen) == sorted(m.__name__ for m in COMMANDS)
    pact.write_file(PACT_DIR, overwrite=True)
    written = pact_json(COMMANDS_PACT)
    assert written["metadata"]["pactSpecification"]["version"] == "4.0"
    assert {i["type"] for i in written["interactions"]} == {"Asynchronous/Messages"}


def test_the_manager_handles_every_reply_it_expects_from_the_builder() -> None:
    pact = build_pact(MANAGER, BUILDER, REPLY_PACTS)
    seen: list[type[Contract]] = []
    pact.verify(lambda body, metadata: seen.append(type(manager_reads_reply(body, metadata))), "Async")
    assert sorted(m.__name__ for m in seen) == sorted(m.__name__ for m in REPLIES)
    pact.write_file(PACT_DIR, overwrite=True)
    assert len(pact_json(REPLIES_PACT)["interactions"]) == len(REPLY_PACTS)


def test_a_consumer_that_cannot_read_a_message_fails_its_pact() -> None:
    # A reply described to the Builder as if it were a command: the Builder's decoding refuses it.
    deleted = REPLY_PACTS[2]
    metadata = {**COMMAND_PACTS[2].metadata, "type": deleted.model.message_type}
    wrong = MessagePact("a reply sent as a command", deleted.model, deleted.body, metadata)
    pact = build_pact(BUILDER, MANAGER, (wrong,))
    with pytest.raises(PactVerificationError) as info:
        pact.verify(check_command, "Async")
    (error,) = info.value.errors
    assert isinstance(error.error, MalformedMessage) and error.error.reason == "unknown_type"
