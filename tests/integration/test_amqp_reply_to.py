"""A command consumer (``require_reply_to``) refuses a command nobody could receive the result of (real broker).

The ``no_correlation_id`` case is in tests/unit/test_amqp_consumer_reply_to.py: aiormq gives every message
it publishes a ``message_id``, which stands in for a missing ``correlation_id``, so no publish here lacks both.
"""

from __future__ import annotations

import json

import aio_pika
import pytest

from shared.amqp import (
    H_REASON,
    REASON_NO_REPLY_TO,
    Consumer,
    Delivery,
    to_message,
)
from shared.contracts import ConnectionDeleted, DeleteConnection
from tests.amqp_support import AmqpEnv, amqp_env, get_message, queue_depth, wait_until

pytestmark = pytest.mark.integration
__all__ = ["amqp_env"]

DELETE = DeleteConnection(connection_id="c-1")


async def start(env: AmqpEnv, calls: list[Delivery], *, require_reply_to: bool) -> Consumer:
    async def delete(message: DeleteConnection, delivery: Delivery) -> ConnectionDeleted:
        calls.append(delivery)
        return ConnectionDeleted(connection_id=message.connection_id)

    consumer = Consumer(
        env.connection,
        env.topology,
        env.topology.builder_queue,
        {DeleteConnection: delete},
        publisher=env.publisher,
        require_reply_to=require_reply_to,
    )
    await consumer.start()
    return consumer


async def publish(env: AmqpEnv, message: aio_pika.Message) -> None:
    await env.publisher.publish(
        message, exchange=env.topology.commands_exchange, routing_key=DELETE.routing_key
    )


async def test_a_command_without_reply_to_is_dead_lettered_before_its_handler_runs(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    calls: list[Delivery] = []
    consumer = await start(amqp_env, calls, require_reply_to=True)
    try:
        await publish(amqp_env, to_message(DELETE, app_id="someone", correlation_id="cmd-1"))
        dead = await get_message(amqp_env.connection, topo.dead_queue)
    finally:
        await consumer.stop(drain_timeout=5)
    assert calls == [], "the handler never ran"
    assert dead.headers[H_REASON] == REASON_NO_REPLY_TO == "no_reply_to"
    assert "reply_to" in str(dead.headers["x-sfconnect-detail"])
    assert dead.correlation_id == "cmd-1" and json.loads(dead.body) == {"connection_id": "c-1"}
    assert await queue_depth(amqp_env.connection, topo.builder_queue) == 0
    assert await queue_depth(amqp_env.connection, topo.replies_queue) == 0


async def test_a_command_with_reply_to_reaches_its_handler_and_is_answered(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    calls: list[Delivery] = []
    consumer = await start(amqp_env, calls, require_reply_to=True)
    try:
        mid = await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue)
        reply = await get_message(amqp_env.connection, topo.replies_queue)
    finally:
        await consumer.stop(drain_timeout=5)
    assert len(calls) == 1 and reply.correlation_id == mid
    assert await queue_depth(amqp_env.connection, topo.dead_queue) == 0


async def test_without_the_option_a_message_without_reply_to_still_reaches_its_handler(
    amqp_env: AmqpEnv,
) -> None:
    # A consumer of replies (the Manager's) gets messages that never carry reply_to.
    topo = amqp_env.topology
    calls: list[Delivery] = []
    consumer = await start(amqp_env, calls, require_reply_to=False)
    try:
        await publish(amqp_env, to_message(DELETE, app_id="builder", correlation_id="cmd-2"))
        await wait_until(lambda: len(calls) == 1, deadline=10, what="the handler call")
    finally:
        await consumer.stop(drain_timeout=5)
    assert calls[0].reply_to is None and calls[0].correlation_id == "cmd-2"
    assert await queue_depth(amqp_env.connection, topo.dead_queue) == 0
