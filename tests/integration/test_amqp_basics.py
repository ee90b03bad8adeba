"""Publishing, consuming and replying against the real broker."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import pytest

from shared.amqp import (
    H_REASON,
    H_REQUEST_ID,
    BrokerUnavailable,
    Consumer,
    Delivery,
    Publisher,
    PublishRejected,
    PublishTimeout,
    RpcClient,
    Unroutable,
    connect,
)
from shared.contracts import ConnectionDeleted, DeleteConnection, RefreshConnectionToken
from tests.amqp_support import INSTANCE, AmqpEnv, amqp_env, get_message, queue_depth, rabbitmqctl, wait_until

pytestmark = pytest.mark.integration
__all__ = ["amqp_env"]

DELETE = DeleteConnection(connection_id="c-1")


async def test_a_confirmed_command_lands_in_the_builder_queue_with_its_properties(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    mid = await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue, request_id="req-1")
    got = await get_message(amqp_env.connection, topo.builder_queue)
    assert got.message_id == mid
    assert got.correlation_id == mid
    assert got.type == "connection.delete.v1"
    assert got.app_id == "manager"
    assert got.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert got.reply_to == topo.replies_queue
    assert got.headers[H_REQUEST_ID] == "req-1"
    assert json.loads(got.body) == {"connection_id": "c-1"}


async def test_an_unroutable_command_raises(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    with pytest.raises(Unroutable, match="routing key"):
        await amqp_env.publisher.publish(
            aio_pika.Message(b"{}", message_id="m-unroutable"),
            exchange=topo.commands_exchange,
            routing_key="nowhere",
        )
    # The publisher stays usable afterwards.
    await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue)
    assert await queue_depth(amqp_env.connection, topo.builder_queue) == 1


async def test_a_publish_to_a_missing_exchange_raises_unroutable_and_the_publisher_recovers(
    amqp_env: AmqpEnv,
) -> None:
    with pytest.raises(Unroutable, match="does not exist"):
        await amqp_env.publisher.publish(
            aio_pika.Message(b"{}"), exchange=f"{amqp_env.prefix}no-such-exchange", routing_key="x"
        )
    await amqp_env.publisher.send_command(DELETE, reply_to=amqp_env.topology.replies_queue)


async def test_a_reply_to_a_vanished_queue_raises_unroutable(amqp_env: AmqpEnv) -> None:
    with pytest.raises(Unroutable):
        await amqp_env.publisher.send_reply(
            ConnectionDeleted(connection_id="c-1"), reply_to=f"{amqp_env.prefix}gone", correlation_id="x"
        )


async def test_a_publish_without_a_connection_fails_at_once_with_a_retryable_error(amqp_env: AmqpEnv) -> None:
    conn = await amqp_env.connect("down")
    pub = Publisher(conn, amqp_env.topology, app_id="manager", deadline=5)
    await pub.start()
    await conn.close()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BrokerUnavailable) as info:
        await pub.send_command(DELETE, reply_to=amqp_env.topology.replies_queue)
    assert info.value.retryable
    assert loop.time() - started < 1.0


async def test_a_handler_reply_goes_to_reply_to_with_the_correlation_id(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    seen: list[Delivery] = []

    async def delete(message: DeleteConnection, delivery: Delivery) -> ConnectionDeleted:
        seen.append(delivery)
        return ConnectionDeleted(connection_id=message.connection_id)

    builder_conn = await amqp_env.connect("builder")
    builder_pub = Publisher(builder_conn, topo, app_id="builder")
    await builder_pub.start()
    consumer = Consumer(
        builder_conn, topo, topo.builder_queue, {DeleteConnection: delete}, publisher=builder_pub
    )
    await consumer.start()
    try:
        mid = await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue, request_id="req-7")
        reply = await get_message(amqp_env.connection, topo.replies_queue)
    finally:
        await consumer.stop(drain_timeout=5)
    assert reply.correlation_id == mid
    assert reply.type == "connection.deleted.v1"
    assert reply.app_id == "builder"
    assert reply.headers[H_REQUEST_ID] == "req-7"
    assert seen[0].attempt == 1 and seen[0].request_id == "req-7" and not seen[0].redelivered
    assert await queue_depth(amqp_env.connection, topo.builder_queue) == 0


@pytest.mark.parametrize(
    ("content_type", "mtype", "body", "reason"),
    [
        ("text/plain", "connection.delete.v1", b'{"connection_id": "c-1"}', "bad_content_type"),
        ("application/json", "connection.explode.v1", b"{}", "unknown_type"),
        ("application/json", "connection.delete.v1", b"{nope", "invalid_json"),
        ("application/json", "connection.delete.v1", b'{"connection_id": 1}', "schema_violation"),
    ],
)
async def test_a_poison_message_is_dead_lettered_with_its_reason_and_the_consumer_keeps_going(
    amqp_env: AmqpEnv, content_type: str, mtype: str, body: bytes, reason: str
) -> None:
    topo = amqp_env.topology
    handled: list[str] = []

    async def delete(message: DeleteConnection, delivery: Delivery) -> None:
        handled.append(message.connection_id)

    consumer = Consumer(
        amqp_env.connection,
        topo,
        topo.builder_queue,
        {DeleteConnection: delete},
        publisher=amqp_env.publisher,
    )
    await consumer.start()
    try:
        poison = aio_pika.Message(body, content_type=content_type, type=mtype, message_id="poison-1")
        await amqp_env.publisher.publish(
            poison, exchange=topo.commands_exchange, routing_key="connection.delete"
        )
        dead = await get_message(amqp_env.connection, topo.dead_queue)
        await amqp_env.publisher.send_command(
            DeleteConnection(connection_id="c-2"), reply_to=topo.replies_queue
        )
        await wait_until(lambda: handled == ["c-2"], deadline=10, what="the next message handled")
    finally:
        await consumer.stop(drain_timeout=5)
    assert dead.headers[H_REASON] == reason
    assert dead.headers["x-sfconnect-detail"]
    assert dead.headers["x-sfconnect-original-message-id"] == "poison-1"
    assert dead.body == body
    assert await queue_depth(amqp_env.connection, topo.builder_queue) == 0


async def test_an_rpc_call_gets_its_reply(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology

    async def refresh(message: RefreshConnectionToken, delivery: Delivery) -> ConnectionDeleted:
        return ConnectionDeleted(connection_id=message.connection_id, app_existed=False)

    consumer = Consumer(
        amqp_env.connection,
        topo,
        topo.builder_queue,
        {RefreshConnectionToken: refresh},
        publisher=amqp_env.publisher,
    )
    rpc = RpcClient(amqp_env.connection, topo, amqp_env.publisher, instance_id=INSTANCE)
    await consumer.start()
    await rpc.start()
    try:
        replies: list[Any] = await asyncio.gather(
            *(
                rpc.call(RefreshConnectionToken(connection_id=f"c-{i}", recipient_key_id="m1"), deadline=10)
                for i in range(5)
            )
        )
    finally:
        await rpc.close()
        await consumer.stop(drain_timeout=5)
    assert [r.connection_id for r in replies] == [f"c-{i}" for i in range(5)]
    assert rpc.pending == 0


async def test_connect_names_the_connection_and_sets_a_short_reconnect_interval(amqp_url: str) -> None:
    conn = await connect(amqp_url, name="sfconnect-test-naming")
    try:
        assert conn.reconnect_interval == 1  # type: ignore[attr-defined]
        assert conn.kwargs["client_properties"]["connection_name"] == "sfconnect-test-naming"
    finally:
        await conn.close()


async def test_a_nacked_publish_raises_publish_rejected(amqp_env: AmqpEnv) -> None:
    full = f"{amqp_env.prefix}full"
    async with amqp_env.connection.channel() as channel:
        await channel.declare_queue(full, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
        try:
            await amqp_env.publisher.publish(aio_pika.Message(b"1"), exchange="", routing_key=full)
            with pytest.raises(PublishRejected) as info:
                await amqp_env.publisher.publish(aio_pika.Message(b"2"), exchange="", routing_key=full)
            assert not isinstance(info.value, Unroutable) and info.value.retryable
        finally:
            await channel.queue_delete(full)


async def test_a_publish_not_confirmed_within_its_deadline_raises_publish_timeout(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    with pytest.raises(PublishTimeout, match="no broker confirm within"):
        await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue, deadline=0)
    # The channel is still usable for the next publish.
    await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue)


def _queue_process(url: str, queue: str, action: str) -> None:
    """``sys:suspend`` / ``sys:resume`` the Erlang process of one classic queue of this test (nothing else)."""
    path = urlsplit(url).path
    vhost = unquote(path[1:]) if len(path) > 1 else "/"
    expr = (
        f'{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"{vhost}">>, queue, <<"{queue}">>)), '
        f"sys:{action}(amqqueue:get_pid(Q))."
    )
    assert rabbitmqctl("eval", expr).strip() == "ok"


async def test_a_publish_whose_confirm_is_withheld_raises_publish_timeout_at_its_deadline(
    amqp_env: AmqpEnv, broker_control: str
) -> None:
    # The broker confirms a message once its queue took it; with this test's own queue process suspended
    # the confirm is really withheld (a memory alarm would block every publisher on the shared broker).
    held = f"{amqp_env.prefix}held"
    async with amqp_env.connection.channel() as channel:
        await channel.declare_queue(held, durable=False, arguments={"x-queue-type": "classic"})
        try:
            await asyncio.to_thread(_queue_process, amqp_env.url, held, "suspend")
            try:
                started = time.monotonic()
                with pytest.raises(PublishTimeout, match=r"no broker confirm within 0\.5s") as info:
                    await amqp_env.publisher.publish(
                        aio_pika.Message(b"held"), exchange="", routing_key=held, deadline=0.5
                    )
                waited = time.monotonic() - started
            finally:
                await asyncio.to_thread(_queue_process, amqp_env.url, held, "resume")
            assert 0.5 <= waited < 3 and info.value.retryable
            # Once the queue runs again the channel still works, and the late message did arrive.
            await amqp_env.publisher.publish(aio_pika.Message(b"next"), exchange="", routing_key=held)
            assert await queue_depth(amqp_env.connection, held) == 2
        finally:
            await channel.queue_delete(held)


async def test_declaring_the_topology_again_is_harmless_and_the_arguments_are_explicit(
    amqp_env: AmqpEnv, broker_control: str
) -> None:
    topo = amqp_env.topology
    async with amqp_env.connection.channel() as channel:
        for _ in range(2):
            await topo.declare_builder(channel)
            await topo.declare_manager(channel, INSTANCE)
    listing = await asyncio.to_thread(
        rabbitmqctl, "list_queues", "name", "type", "arguments", "--no-table-headers", "--quiet"
    )
    mine = {
        line.split("\t")[0]: line.split("\t")[1:]
        for line in listing.splitlines()
        if line.startswith(topo.prefix)
    }
    kind, arguments = mine[topo.builder_queue]
    assert kind == "quorum"
    assert '{"x-delivery-limit",5}' in arguments
    assert f'{{"x-dead-letter-exchange","{topo.dead_exchange}"}}' in arguments
    assert mine[topo.replies_queue][0] == "quorum" and mine[topo.dead_queue][0] == "quorum"
    rpc_kind, rpc_arguments = mine[topo.rpc_queue(INSTANCE)]
    assert rpc_kind == "classic" and '{"x-expires",60000}' in rpc_arguments
    retry_kind, retry_arguments = mine[topo.retry_queue(1)]
    assert retry_kind == "quorum"
    assert '{"x-message-ttl",1000}' in retry_arguments
    assert f'{{"x-dead-letter-exchange","{topo.commands_exchange}"}}' in retry_arguments


async def test_stopping_a_consumer_lets_the_message_in_hand_finish(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    started = asyncio.Event()
    finished: list[str] = []

    async def slow_delete(message: DeleteConnection, delivery: Delivery) -> ConnectionDeleted:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(message.connection_id)
        return ConnectionDeleted(connection_id=message.connection_id)

    consumer = Consumer(
        amqp_env.connection,
        topo,
        topo.builder_queue,
        {DeleteConnection: slow_delete},
        publisher=amqp_env.publisher,
    )
    await consumer.start()
    await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue)
    await asyncio.wait_for(started.wait(), timeout=10)
    await consumer.stop(drain_timeout=5)
    assert finished == ["c-1"] and consumer.in_flight == 0
    assert await queue_depth(amqp_env.connection, topo.builder_queue) == 0
    assert (await get_message(amqp_env.connection, topo.replies_queue)).type == "connection.deleted.v1"
