"""contracts/asyncapi.yaml is generated from the models, is a valid AsyncAPI 3.0 document, and describes
the messages our code really sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT7

from shared.amqp import to_message
from shared.amqp.topology import Topology
from shared.contracts import COMMANDS, REPLIES, ErrorCode
from shared.contracts.asyncapi import build_document, render
from shared.contracts.examples import EXAMPLES

pytestmark = pytest.mark.contract

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
DOC_PATH = CONTRACTS / "asyncapi.yaml"
# The AsyncAPI Initiative's own JSON Schema of the 3.0.0 specification (see contracts/vendor/asyncapi/README.md).
SPEC_SCHEMA = CONTRACTS / "vendor" / "asyncapi" / "asyncapi-3.0.0.schema.json"
DOC = build_document()


def test_the_committed_asyncapi_document_is_up_to_date() -> None:
    committed = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
    assert committed == render(), (
        "contracts/asyncapi.yaml is stale: run `make contracts` and commit the result"
    )


def _spec_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SPEC_SCHEMA.read_text(encoding="utf-8")))


def test_the_document_is_valid_asyncapi_3() -> None:
    errors = [
        f"{list(e.absolute_path)}: {e.message[:200]}"
        for e in _spec_validator().iter_errors(yaml.safe_load(render()))
    ]
    assert errors == []


def test_the_spec_schema_catches_a_broken_document() -> None:
    broken = json.loads(json.dumps(DOC))
    broken["operations"]["sendCreateConnection"]["reply"]["unexpected"] = True
    broken["channels"]["commands"]["bindings"]["amqp"]["is"] = "exchange"
    assert len(list(_spec_validator().iter_errors(broken))) == 2


def _resolve(pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = DOC
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*([node["$ref"]] if "$ref" in node else []), *(r for v in node.values() for r in _refs(v))]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves() -> None:
    refs = _refs(DOC)
    assert len(refs) > 50
    for ref in refs:
        assert _resolve(ref) is not None, ref


def test_the_channel_addresses_are_the_topology_names() -> None:
    topo = Topology()
    addresses = {name: channel["address"] for name, channel in DOC["channels"].items()}
    assert addresses == {
        "commands": topo.commands_exchange,
        "builderCommands": topo.builder_queue,
        "managerReplies": topo.replies_queue,
        "managerRpc": "manager.rpc.{instance}",
        "retry": "sfconnect.retry.{delay}",
        "deadLetters": topo.dead_queue,
    }


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.message_type)
def test_each_command_has_send_and_receive_operations_with_a_correlated_reply(command: Any) -> None:
    for action in ("send", "receive"):
        op = DOC["operations"][f"{action}{command.__name__}"]
        assert op["action"] == action
        reply = op["reply"]
        assert reply["address"]["location"] == "$message.header#/reply_to"
        replies = [_resolve(_resolve(r["$ref"])["$ref"])["name"] for r in reply["messages"]]
        assert "CommandFailed" in replies and len(replies) == 2
    message = DOC["components"]["messages"][command.__name__]
    correlation = _resolve(message["correlationId"]["$ref"])
    assert correlation["location"] == "$message.header#/correlation_id"


def test_the_error_codes_are_all_documented() -> None:
    schema = DOC["components"]["schemas"]["ErrorCode"]
    assert set(schema["enum"]) == {c.value for c in ErrorCode}
    assert set(schema["x-retryable"]) == {"salesforce_unavailable", "request_limit_exceeded"}
    for code in ErrorCode:
        assert f"`{code.value}`" in schema["description"]


def _validator(schema_name: str) -> jsonschema.Draft7Validator:
    """A validator for one component schema (AsyncAPI's default schema format is a superset of draft 7)."""
    registry: Registry[Any] = Registry().with_resource("urn:asyncapi", DRAFT7.create_resource(DOC))
    schema = {"$ref": f"urn:asyncapi#/components/schemas/{schema_name}"}
    return jsonschema.Draft7Validator(
        schema, registry=registry, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


@pytest.mark.parametrize("model", (*COMMANDS, *REPLIES), ids=lambda m: m.message_type)
def test_what_the_code_sends_matches_the_documented_schemas(model: Any) -> None:
    contract = EXAMPLES[model]
    message = to_message(
        contract, app_id="builder", correlation_id="c0ffee", reply_to="manager.replies", request_id="req-1"
    )
    _validator(model.__name__).validate(json.loads(message.body))
    properties = {
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "reply_to": message.reply_to,
        "type": message.type,
        "timestamp": int(message.timestamp.timestamp()) if message.timestamp else None,
        "app_id": message.app_id,
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "delivery_mode": int(message.delivery_mode),
        **message.headers,
    }
    _validator("MessageHeaders").validate(properties)
    documented = DOC["components"]["messages"][model.__name__]
    assert documented["bindings"]["amqp"]["messageType"] == message.type


def test_a_wrong_body_does_not_match_the_documented_schema() -> None:
    with pytest.raises(jsonschema.ValidationError):
        _validator("CreateConnection").validate({"connection_id": "c-1", "surprise": True})
