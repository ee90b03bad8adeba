"""Replies the Manager cannot trust are dead-lettered with a typed reason, never applied (real broker)."""

from __future__ import annotations

from typing import Any

import aio_pika
import pytest

from shared.amqp import H_REASON, connect, to_message
from shared.amqp.message import H_ORIGINAL_MESSAGE_ID
from shared.contracts import ConnectionCreated, utcnow
from tests.integration.manager_stack import ManagerStack, eventually, manager_stack
from tests.unit.manager_world import created_reply

pytestmark = pytest.mark.integration
__all__ = ["manager_stack"]


async def _dead_letters(s: ManagerStack, count: int) -> list[Any]:
    conn = await connect(s.amqp_url, name="test-dead-letter-reader")
    try:
        channel = await conn.channel()
        queue = await s.topology.declare_queue(channel, s.topology.dead_queue)
        found: list[Any] = []

        async def all_there() -> bool:
            message = await queue.get(fail=False, timeout=5)
            if message is not None:
                await message.ack()
                found.append(message)
            return len(found) >= count

        await eventually(all_there, what=f"{count} dead letters")
        return found
    finally:
        await conn.close()


async def test_a_reply_without_content_type_or_nested_too_deeply_is_dead_lettered_not_applied(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    client = await s.start_app()
    good = to_message(created_reply("con_nocontenttype", s.keys.sealer, utcnow()), app_id="builder")
    no_content_type = aio_pika.Message(good.body, type=good.type, message_id="no-ct", headers=good.headers)
    assert no_content_type.content_type is None
    nested = aio_pika.Message(
        b'{"connection_id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        content_type="application/json",
        type=ConnectionCreated.message_type,
        message_id="nested",
    )
    conn = await connect(s.amqp_url, name="test-raw-reply-publisher")
    try:
        channel = await conn.channel()
        for message in (no_content_type, nested):
            await channel.default_exchange.publish(message, routing_key=s.topology.replies_queue)
    finally:
        await conn.close()

    reasons = {m.headers[H_ORIGINAL_MESSAGE_ID]: m.headers[H_REASON] for m in await _dead_letters(s, 2)}
    # without the content-type check the first one would have been decoded and dead-lettered as
    # connection_not_found; the second one used to crash the decoder with a RecursionError
    assert reasons == {"no-ct": "bad_content_type", "nested": "invalid_json"}
    metrics = await (await client.get("/metrics")).text()
    assert 'sfconnect_manager_replies_total{outcome="unknown_connection"' not in metrics
