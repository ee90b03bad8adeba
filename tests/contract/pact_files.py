"""Writing the Pact files: each consumer states what it relies on, checks that its decoding path accepts
every message of its pact, and the pact is written to a directory.

``make contracts`` runs ``python -m tests.contract.pact_files`` to regenerate ``contracts/pacts/``; the
consumer tests write to a temporary directory and fail when the committed files differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pact import Pact

from shared.amqp import decode_message, delivery_of
from shared.contracts import COMMANDS, REPLIES, ConnectionCreated, ConnectionTokenRefreshed, Contract
from tests.contract.pact_messages import (
    BUILDER,
    COMMAND_PACTS,
    MANAGER,
    PACT_DIR,
    REPLY_PACTS,
    MessagePact,
    incoming_from,
    pact_json,
)


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


def commands_pact() -> tuple[Pact, list[type[Contract]]]:
    """The Builder's pact on the Manager's commands, verified; and the command types it decoded."""
    pact = build_pact(BUILDER, MANAGER, COMMAND_PACTS)
    seen: list[type[Contract]] = []
    pact.verify(lambda body, metadata: seen.append(type(builder_reads_command(body, metadata))), "Async")
    return pact, seen


def replies_pact() -> tuple[Pact, list[type[Contract]]]:
    """The Manager's pact on the Builder's replies, verified; and the reply types it decoded."""
    pact = build_pact(MANAGER, BUILDER, REPLY_PACTS)
    seen: list[type[Contract]] = []
    pact.verify(lambda body, metadata: seen.append(type(manager_reads_reply(body, metadata))), "Async")
    return pact, seen


def write_pacts(directory: Path) -> None:
    """Verify both consumers and write their pact files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for pact, _ in (commands_pact(), replies_pact()):
        pact.write_file(directory, overwrite=True)


def stale_pacts(fresh: Path, committed: Path = PACT_DIR) -> list[str]:
    """What differs between freshly written pact files and the committed ones (empty when up to date)."""
    problems = []
    names = sorted({p.name for p in fresh.glob("*.json")} | {p.name for p in committed.glob("*.json")})
    for name in names:
        if not (committed / name).exists():
            problems.append(f"contracts/pacts/{name} is missing: run `make contracts` and commit it")
        elif not (fresh / name).exists():
            problems.append(f"contracts/pacts/{name} is no longer written: delete it (`make contracts`)")
        elif pact_json(committed / name) != pact_json(fresh / name):
            problems.append(f"contracts/pacts/{name} is stale: run `make contracts` and commit the result")
    return problems


if __name__ == "__main__":
    write_pacts(Path(sys.argv[1]) if len(sys.argv) > 1 else PACT_DIR)
