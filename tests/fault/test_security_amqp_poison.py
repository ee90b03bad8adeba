"""Hostile messages on the Builder's command queue and the Manager's replies queue are dead-lettered with a
reason; both consumers keep running and the next real connection still completes."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest

from shared.amqp import H_REASON, Topology
from shared.amqp.message import H_DETAIL, H_ORIGINAL_MESSAGE_ID, H_SOURCE_QUEUE
from tests.fault.conftest import Launch
from tests.fault.harness import ALL_SCOPES, Deadline, eventually, write_figures

pytestmark = pytest.mark.fault

CONNECTION_ID = "con_019a0000000000000000aa"
GOOD_CREATE = {
    "connection_id": CONNECTION_ID,
    "org_id": "00D000000000001AAA",
    "salesforce_username": "someone@acme.example",
    "admin_email": "it@acme.example",
    "label": "poison",
    "app_kind": "auto",
    "recipient_key_id": "m1",
}


@dataclass(frozen=True)
class Poison:
    name: str
    body: bytes
    type: str | None
    content_type: str | None
    reason: str


def _cases(command_type: str, good: dict[str, Any]) -> list[Poison]:
    wrong_types = {**good, "connection_id": 42, "org_id": ["00D"], "label": {"x": 1}}
    return [
        Poison("malformed JSON", b'{"connection_id": "con_', command_type, "application/json", "invalid_json"),
        Poison("not UTF-8", b"\xff\xfe\x00{", command_type, "application/json", "invalid_json"),
        Poison("a JSON array", b"[1, 2, 3]", command_type, "application/json", "invalid_json"),
        Poison("wrong types", json.dumps(wrong_types).encode(), command_type, "application/json", "schema_violation"),
        Poison("missing fields", b"{}", command_type, "application/json", "schema_violation"),
        Poison("unknown field", json.dumps({**good, "extra": 1}).encode(), command_type, "application/json", "schema_violation"),
        Poison("oversized body", json.dumps({**good, "label": "x" * 200_000}).encode(), command_type, "application/json", "too_large"),
        Poison("unknown message type", json.dumps(good).encode(), "connection.explode.v1", "application/json", "unknown_type"),
        Poison("no message type", json.dumps(good).encode(), None, "application/json", "unknown_type"),
        Poison("wrong content type", json.dumps(good).encode(), command_type, "text/plain", "bad_content_type"),
        Poison("XML content type", b"<create/>", command_type, "application/xml", "bad_content_type"),
    ]  # fmt: skip


async def _publish(channel: aio_pika.abc.AbstractChannel, queue: str, poison: Poison) -> str:
    message_id = str(uuid.uuid4())
    await channel.default_exchange.publish(
        aio_pika.Message(
            poison.body,
            content_type=poison.content_type,
            type=poison.type,
            message_id=message_id,
            correlation_id=message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=queue,
    )
    return message_id


async def test_poison_messages_on_both_queues_are_dead_lettered_with_reasons_and_consumers_keep_running(
    launch: Launch,
) -> None:
    api = await launch()
    stack = api.stack
    topo = Topology(prefix=stack.amqp_prefix)
    api.api_key = stack.create_api_key("poison", *ALL_SCOPES)
    org_id = await api.authorize()

    reply_good = {"connection_id": CONNECTION_ID, "app_existed": True}
    targets = {
        topo.builder_queue: _cases("connection.create.v1", GOOD_CREATE),
        topo.replies_queue: _cases("connection.deleted.v1", reply_good),
    }
    forged = Poison(
        "reply for an unknown connection",
        json.dumps(reply_good).encode(),
        "connection.deleted.v1",
        "application/json",
        "connection_not_found",
    )
    targets[topo.replies_queue].append(forged)
    targets[topo.builder_queue].append(
        Poison("a reply sent to the Builder", json.dumps(reply_good).encode(), "connection.deleted.v1",
               "application/json", "unknown_type")
    )  # fmt: skip

    sent: dict[str, tuple[str, Poison]] = {}
    started = time.monotonic()
    conn = await aio_pika.connect(stack.amqp_url, timeout=10)
    try:
        channel = await conn.channel(publisher_confirms=True)
        for queue, cases in targets.items():
            for poison in cases:
                sent[await _publish(channel, queue, poison)] = (queue, poison)

        dead: dict[str, dict[str, Any]] = {}
        dlq = await channel.get_queue(topo.dead_queue, ensure=True)

        async def all_dead_lettered() -> bool:
            while (msg := await dlq.get(no_ack=True, fail=False, timeout=10)) is not None:
                headers = dict(msg.headers or {})
                original = str(headers.get(H_ORIGINAL_MESSAGE_ID, ""))
                dead[original] = {k: v.decode() if isinstance(v, bytes) else v for k, v in headers.items()}
            return set(sent) <= set(dead)

        try:
            await eventually(all_dead_lettered, deadline_s=30, what="every poison message dead-lettered")
        except Deadline:
            missing = [f"{q}: {p.name}" for mid, (q, p) in sent.items() if mid not in dead]
            raise AssertionError(f"not dead-lettered: {missing}") from None
        elapsed = time.monotonic() - started
    finally:
        await conn.close()

    outcomes = []
    for mid, (queue, poison) in sent.items():
        headers = dead[mid]
        outcomes.append((queue.removeprefix(stack.amqp_prefix), poison.name, headers.get(H_REASON)))
        assert headers.get(H_REASON) == poison.reason, (poison.name, queue, headers)
        assert headers.get(H_SOURCE_QUEUE) == queue
        assert headers.get(H_DETAIL), f"{poison.name}: the dead letter says nothing about why"

    # Both consumers are still up and working: a real connection goes pending → active.
    assert all(stack.procs[n].alive() for n in stack.services())
    status, created = await api.create(org_id, "after-poison")
    assert status == 202, created

    async def active() -> bool:
        return (await api.connection(created["id"]))[1]["status"] == "active"

    await eventually(active, deadline_s=60, what="a connection created after the poison became active")
    write_figures(
        "amqp-poison",
        {
            "poison_messages": len(sent),
            "dead_lettered": len([m for m in sent if m in dead]),
            "lost": len([m for m in sent if m not in dead]),
            "seconds_until_all_dead_lettered": round(elapsed, 2),
            "reasons": sorted({f"{q}: {name} -> {reason}" for q, name, reason in outcomes}),
            "consumers_alive_after": True,
        },
    )
