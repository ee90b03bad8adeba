"""Generate the AsyncAPI 3.0 document of the Manager ↔ Builder wire from the contract models.

``python -m shared.contracts.asyncapi`` prints it; ``make contracts`` writes ``contracts/asyncapi.yaml``
and tests/contract fails when that file is stale. Payload schemas come from the pydantic models, names
from ``shared.amqp.Topology`` (unprefixed), header names from ``shared.amqp.message``: nothing here is
written twice. (This tool imports the AMQP layer; the wire models in ``shared.contracts`` do not.)
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from shared.amqp.topology import Topology
from shared.contracts.asyncapi_schemas import SCHEMAS, component_schemas
from shared.contracts.base import Contract
from shared.contracts.commands import (
    COMMANDS,
    CreateConnection,
    DeleteConnection,
    RefreshConnectionToken,
)
from shared.contracts.examples import EXAMPLES
from shared.contracts.replies import (
    REPLIES,
    CommandFailed,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionTokenRefreshed,
)

VERSION = "1.0.0"
AMQP_BINDING = "0.3.0"

# Which replies answer which command, and on which reply channel the Manager waits for them.
REPLY_OF: dict[type[Contract], tuple[type[Contract], str]] = {
    CreateConnection: (ConnectionCreated, "managerReplies"),
    RefreshConnectionToken: (ConnectionTokenRefreshed, "managerRpc"),
    DeleteConnection: (ConnectionDeleted, "managerReplies"),
}


def _args(arguments: dict[str, Any]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in arguments.items())


def _key(model: type[Contract]) -> str:
    return model.__name__[0].lower() + model.__name__[1:]


def _ref(path: str) -> dict[str, str]:
    return {"$ref": path}


def _message(model: type[Contract]) -> dict[str, Any]:
    return {
        "name": model.__name__,
        "title": model.message_type,
        "summary": model.summary or (model.__doc__ or "").strip(),
        "contentType": "application/json",
        "headers": _ref(SCHEMAS + "MessageHeaders"),
        "payload": _ref(SCHEMAS + model.__name__),
        "correlationId": _ref("#/components/correlationIds/commandId"),
        "bindings": {
            "amqp": {
                "contentEncoding": "utf-8",
                "messageType": model.message_type,
                "bindingVersion": AMQP_BINDING,
            }
        },
        "examples": [{"name": "example", "payload": EXAMPLES[model].model_dump(mode="json")}],
    }


def _queue(name: str) -> dict[str, Any]:
    queue = {"name": name, "durable": True, "exclusive": False, "autoDelete": False, "vhost": "/"}
    return {"amqp": {"is": "queue", "queue": queue, "bindingVersion": AMQP_BINDING}}


def _messages(models: tuple[type[Contract], ...]) -> dict[str, Any]:
    return {_key(m): _ref(f"#/components/messages/{m.__name__}") for m in models}


def _channels(topo: Topology) -> dict[str, Any]:
    work = topo.queue_spec(topo.builder_queue).arguments
    delays = [str(d) for d in topo.retry_delays]
    return {
        "commands": {
            "address": topo.commands_exchange,
            "title": "Commands exchange",
            "description": "Direct exchange, durable. Routing keys: "
            + ", ".join(f"`{c.routing_key}` ({c.message_type})" for c in COMMANDS)
            + "; each retrying queue is also bound under its own name (delayed retries come back that way).",
            "messages": _messages(COMMANDS),
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": topo.commands_exchange,
                        "type": "direct",
                        "durable": True,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                    "bindingVersion": AMQP_BINDING,
                }
            },
        },
        "builderCommands": {
            "address": topo.builder_queue,
            "title": "The Builder's work queue",
            "description": f"Quorum queue ({_args(work)}), bound to the commands exchange with every command "
            "routing key. Poison and exhausted messages go to the dead-letter exchange with the reason in a header.",
            "messages": _messages(COMMANDS),
            "bindings": _queue(topo.builder_queue),
        },
        "managerReplies": {
            "address": topo.replies_queue,
            "title": "Durable replies to asynchronous commands",
            "description": f"Quorum queue ({_args(topo.queue_spec(topo.replies_queue).arguments)}); any "
            "Manager replica may process any reply. Replies are published to the default exchange with the "
            "command's reply_to as routing key.",
            "messages": _messages(REPLIES),
            "bindings": _queue(topo.replies_queue),
        },
        "managerRpc": {
            "address": topo.rpc_queue("{instance}"),
            "title": "Per-replica replies for synchronous waits (token refresh)",
            "description": "Classic queue, durable, not exclusive, "
            f"x-expires {topo.rpc_expires_ms} ms; replies matched to waiting calls by correlation_id.",
            "parameters": {"instance": {"description": "The Manager replica's INSTANCE_ID."}},
            "messages": _messages(REPLIES),
        },
        "retry": {
            "address": topo.retry_queue("{delay}"),
            "title": "Delayed retries",
            "description": "Per delay tier N a fanout exchange and a quorum queue, both named sfconnect.retry.N, "
            "with x-message-ttl N s and x-dead-letter-exchange = the commands exchange. The consumer republishes "
            "a failed message to the tier's exchange with routing key = the name of the queue it came from (the "
            "retry queue sets no x-dead-letter-routing-key, so that key is kept), with x-sfconnect-attempt + 1.",
            "parameters": {"delay": {"enum": delays, "description": "Delay in seconds."}},
            "messages": _messages((*COMMANDS, *REPLIES)),
        },
        "deadLetters": {
            "address": topo.dead_queue,
            "title": "Dead letters",
            "description": f"Quorum queue bound to the fanout exchange {topo.dead_exchange}: poison and exhausted "
            "messages, never redelivered automatically.",
            "messages": {"deadLetter": _ref("#/components/messages/DeadLetter")},
            "bindings": _queue(topo.dead_queue),
        },
    }


def _operations() -> dict[str, Any]:
    ops: dict[str, Any] = {}
    publish = {
        "amqp": {"deliveryMode": 2, "mandatory": True, "timestamp": True, "bindingVersion": AMQP_BINDING}
    }
    for command, (reply, channel) in REPLY_OF.items():
        name = command.__name__
        answer = {
            "address": {
                "location": "$message.header#/reply_to",
                "description": "The command's reply_to property names the queue.",
            },
            "channel": _ref(f"#/channels/{channel}"),
            "messages": [_ref(f"#/channels/{channel}/messages/{_key(m)}") for m in (reply, CommandFailed)],
        }
        ops[f"send{name}"] = {
            "action": "send",
            "title": f"Manager sends {command.message_type}",
            "summary": command.summary,
            "description": "Published with publisher confirms and mandatory=true under a deadline; correlation_id "
            "= message_id of the first publish; reply_to = the reply channel's queue.",
            "channel": _ref("#/channels/commands"),
            "messages": [_ref(f"#/channels/commands/messages/{_key(command)}")],
            "reply": answer,
            "bindings": publish,
        }
        ops[f"receive{name}"] = {
            "action": "receive",
            "title": f"Builder handles {command.message_type}",
            "summary": command.summary,
            "channel": _ref("#/channels/builderCommands"),
            "messages": [_ref(f"#/channels/builderCommands/messages/{_key(command)}")],
            "reply": answer,
        }
    ops["receiveReplies"] = {
        "action": "receive",
        "title": "Manager consumes asynchronous replies",
        "channel": _ref("#/channels/managerReplies"),
        "messages": [_ref(f"#/channels/managerReplies/messages/{_key(m)}") for m in REPLIES],
    }
    return ops


def build_document(topology: Topology | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document as plain data."""
    topo = topology or Topology()
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "sfconnect Manager ↔ Builder messaging",
            "version": VERSION,
            "description": "Commands from the Manager to the Builder and their replies over RabbitMQ (AMQP 0-9-1). "
            "JSON bodies in UTF-8; message types are versioned (`.v1`). Publishers use confirms and `mandatory`; "
            "consumers set QoS before consuming and are idempotent by connection_id. Access tokens travel only "
            "sealed with HPKE (X25519, HKDF-SHA256, AES-256-GCM) to the Manager key named by recipient_key_id; "
            "the HPKE info binds the connection id and message type. Generated by `make contracts`.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "RabbitMQ 3.10+ or 4.x.",
            },
        },
        "channels": _channels(topo),
        "operations": _operations(),
        "components": {
            "schemas": component_schemas(),
            "messages": {
                **{m.__name__: _message(m) for m in (*COMMANDS, *REPLIES)},
                "DeadLetter": {
                    "name": "DeadLetter",
                    "title": "A dead-lettered message",
                    "summary": "The original body and properties; the reason in x-sfconnect-reason.",
                    "headers": _ref(SCHEMAS + "DeadLetterHeaders"),
                    "payload": {"description": "The original body, unchanged (it may not be valid JSON)."},
                },
            },
            "correlationIds": {
                "commandId": {
                    "description": "The command's id: its message_id at first publish, carried by every retry "
                    "and by the reply.",
                    "location": "$message.header#/correlation_id",
                }
            },
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """No anchors or aliases: every shared piece is written out where it is used."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(topology: Topology | None = None) -> str:
    """The document as YAML, deterministic for a given set of models."""
    head = "# Generated from shared/contracts by `make contracts` (python -m shared.contracts.asyncapi). Do not edit.\n"
    return head + yaml.dump(
        build_document(topology), Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=110
    )


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
