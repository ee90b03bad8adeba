"""Pact consumer side (V4 asynchronous messages): the Builder consumes commands, the Manager consumes replies.

Each test states what its consumer relies on and runs the consumer's decoding path (``shared.amqp``) on every
message of the pact (see ``tests/contract/pact_files.py``). The pact files are written to a temporary
directory and compared with the committed ``contracts/pacts/``, which ``make contracts`` regenerates.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pact.error import PactVerificationError

from shared.contracts import COMMANDS, REPLIES, MalformedMessage
from tests.contract.pact_files import (
    build_pact,
    builder_reads_command,
    commands_pact,
    replies_pact,
    stale_pacts,
    write_pacts,
)
from tests.contract.pact_messages import (
    BUILDER,
    COMMAND_PACTS,
    COMMANDS_PACT,
    MANAGER,
    REPLIES_PACT,
    REPLY_PACTS,
    MessagePact,
    pact_json,
)

pytestmark = pytest.mark.contract


def test_the_builder_handles_every_command_it_expects_from_the_manager() -> None:
    _, seen = commands_pact()
    assert sorted(m.__name__ for m in seen) == sorted(m.__name__ for m in COMMANDS)


def test_the_manager_handles_every_reply_it_expects_from_the_builder() -> None:
    _, seen = replies_pact()
    assert sorted(m.__name__ for m in seen) == sorted(m.__name__ for m in REPLIES)


def test_the_committed_pact_files_are_up_to_date(tmp_path: Path) -> None:
    write_pacts(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted([COMMANDS_PACT.name, REPLIES_PACT.name])
    assert stale_pacts(tmp_path) == []
    commands = pact_json(COMMANDS_PACT)
    assert commands["metadata"]["pactSpecification"]["version"] == "4.0"
    assert {i["type"] for i in commands["interactions"]} == {"Asynchronous/Messages"}
    assert len(pact_json(REPLIES_PACT)["interactions"]) == len(REPLY_PACTS)


def test_a_stale_or_missing_pact_file_is_reported(tmp_path: Path) -> None:
    fresh, committed = tmp_path / "fresh", tmp_path / "committed"
    write_pacts(fresh)
    shutil.copytree(fresh, committed)
    edited = pact_json(committed / COMMANDS_PACT.name)
    edited["interactions"][0]["description"] = "an older create-connection command"
    (committed / COMMANDS_PACT.name).write_text(json.dumps(edited), encoding="utf-8")
    (committed / REPLIES_PACT.name).unlink()
    assert stale_pacts(fresh, committed) == [
        f"contracts/pacts/{COMMANDS_PACT.name} is stale: run `make contracts` and commit the result",
        f"contracts/pacts/{REPLIES_PACT.name} is missing: run `make contracts` and commit it",
    ]


def check_command(body: str | bytes | None, metadata: dict[str, object]) -> None:
    builder_reads_command(body, metadata)


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
