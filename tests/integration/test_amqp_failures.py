"""What the consumer wrapper and the RPC client do when things go wrong (real broker)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import structlog

from shared.amqp import (
    H_ATTEMPT,
    H_REASON,
    Consumer,
    Delivery,
    Publisher,
    RpcClient,
    RpcConnectionLost,
    RpcTimeout,
)
from shared.contracts import (
    CommandFailed,
    ConnectionDeleted,
    DeleteConnection,
    ErrorCode,
    ErrorDetail,
    RefreshConnectionToken,
    decode,
)
from shared.errors import PermanentError, RetryableError, SfconnectError
from tests.amqp_support import (
    INSTANCE,
    AmqpEnv,
    amqp_env,
    close_my_connections,
    drain,
    get_message,
    queue_depth,
    wait_until,
)

pytestmark = pytest.mark.integration
__all__ = ["amqp_env"]

DELETE = DeleteConnection(connection_id="c-1")


def command_failed(message: Any, delivery: Delivery, error: SfconnectError) -> CommandFailed:
    code = error.code if error.code in ErrorCode.__members__.values() else ErrorCode.INTERNAL_ERROR
    return CommandFailed(
        connection_id=message.connection_id,
        command_type=delivery.message_type or "",
        error=ErrorDetail(code=ErrorCode(code), message=error.message, retryable=error.retryable),
    )


async def start_consumer(env: AmqpEnv, handlers: dict[Any, Any], **kwargs: Any) -> Consumer:
    consumer = Consumer(
        env.connection, env.topology, env.topology.builder_queue, handlers, publisher=env.publisher, **kwargs
    )
    await consumer.start()
    return consumer


async def test_a_retryable_failure_is_retried_after_a_delay_then_succeeds(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    calls: list[tuple[float, Delivery]] = []

    async def delete(message: DeleteConnection, delivery: Delivery) -> ConnectionDeleted:
        calls.append((time.monotonic(), delivery))
        if len(calls) == 1:
            raise RetryableError("Salesforce is down", code="salesforce_unavailable", retry_after=1)
        return ConnectionDeleted(connection_id=message.connection_id)

    consumer = await start_consumer(amqp_env, {DeleteConnection: delete}, failure_reply=command_failed)
    try:
        mid = await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue, request_id="r-1")
        reply = await get_message(amqp_env.connection, topo.replies_queue, deadline=15)
    finally:
        await consumer.stop(drain_timeout=5)
    assert reply.type == "connection.deleted.v1" and reply.correlation_id == mid
    (t1, first), (t2, second) = calls
    assert t2 - t1 >= 0.9, "the retry waited in the 1 s delay tier"
    assert (first.attempt, second.attempt) == (1, 2)
    assert second.first_attempt_at == first.first_attempt_at
    assert second.correlation_id == mid and second.request_id == "r-1"
    assert await queue_depth(amqp_env.connection, topo.dead_queue) == 0


async def test_retries_stop_at_the_limit_with_a_failure_reply_and_a_dead_letter(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    attempts: list[int] = []

    async def delete(message: DeleteConnection, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise RetryableError("still propagating", code="salesforce_unavailable", retry_after=0.5)

    consumer = await start_consumer(
        amqp_env, {DeleteConnection: delete}, max_attempts=3, failure_reply=command_failed
    )
    try:
        started = time.monotonic()
        mid = await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue)
        reply = await get_message(amqp_env.connection, topo.replies_queue, deadline=20)
        elapsed = time.monotonic() - started
        dead = await get_message(amqp_env.connection, topo.dead_queue)
    finally:
        await consumer.stop(drain_timeout=5)
    assert attempts == [1, 2, 3]
    assert elapsed >= 1.8, "two delayed retries of >= 1 s each"
    failed = decode(reply.type, reply.body)
    assert isinstance(failed, CommandFailed) and failed.error.code == ErrorCode.SALESFORCE_UNAVAILABLE
    assert failed.error.retryable and reply.correlation_id == mid
    assert dead.headers[H_REASON] == "retries_exhausted"
    assert "salesforce_unavailable" in str(dead.headers["x-sfconnect-detail"])
    assert dead.headers[H_ATTEMPT] == 3
    assert dead.correlation_id == mid
    assert await queue_depth(amqp_env.connection, topo.builder_queue) == 0


async def test_retry_after_picks_the_delay_tier(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology  # tiers (1, 2)
    times: list[float] = []

    async def delete(message: DeleteConnection, delivery: Delivery) -> None:
        times.append(time.monotonic())
        if len(times) == 1:
            raise RetryableError("limit", code="request_limit_exceeded", retry_after=1.5)

    consumer = await start_consumer(amqp_env, {DeleteConnection: delete})
    try:
        await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue)
        await wait_until(lambda: len(times) == 2, deadline=10, what="the retried delivery")
    finally:
        await consumer.stop(drain_timeout=5)
    assert times[1] - times[0] >= 1.9


async def test_a_permanent_failure_sends_a_failure_reply_and_acks(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    calls = 0

    async def delete(message: DeleteConnection, delivery: Delivery) -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("no such user", code="user_not_found")

    consumer = await start_consumer(amqp_env, {DeleteConnection: delete}, failure_reply=command_failed)
    try:
        mid = await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue)
        reply = await get_message(amqp_env.connection, topo.replies_queue)
        await asyncio.sleep(0.3)  # give a wrongly requeued message the chance to come back
    finally:
        await consumer.stop(drain_timeout=5)
    failed = decode(reply.type, reply.body)
    assert isinstance(failed, CommandFailed)
    assert failed.error.code == ErrorCode.USER_NOT_FOUND and not failed.error.retryable
    assert failed.command_type == "connection.delete.v1" and reply.correlation_id == mid
    assert calls == 1
    assert await queue_depth(amqp_env.connection, topo.builder_queue) == 0
    assert await queue_depth(amqp_env.connection, topo.dead_queue) == 0


async def test_a_permanent_failure_without_a_failure_reply_is_dead_lettered_with_its_code(
    amqp_env: AmqpEnv,
) -> None:
    topo = amqp_env.topology

    async def delete(message: DeleteConnection, delivery: Delivery) -> None:
        raise PermanentError("blocked by the org", code="app_creation_blocked")

    consumer = await start_consumer(amqp_env, {DeleteConnection: delete})
    try:
        await amqp_env.publisher.send_command(DELETE, reply_to=topo.replies_queue)
        dead = await get_message(amqp_env.connection, topo.dead_queue)
    finally:
        await consumer.stop(drain_timeout=5)
    assert dead.headers[H_REASON] == "app_creation_blocked"
    assert json.loads(dead.body) == {"connection_id": "c-1"}
    assert await queue_depth(amqp_env.connection, topo.replies_queue) == 0


async def test_an_unexpected_exception_is_retried_as_internal_error_and_the_consumer_survives(
    amqp_env: AmqpEnv,
) -> None:
    topo = amqp_env.topology
    seen: list[tuple[str, int]] = []

    async def delete(message: DeleteConnection, delivery: Delivery) -> ConnectionDeleted:
        seen.append((message.connection_id, delivery.attempt))
        if message.connection_id == "boom":
            raise ZeroDivisionError("bug")
        return ConnectionDeleted(connection_id=message.connection_id)

    consumer = await start_consumer(
        amqp_env, {DeleteConnection: delete}, max_attempts=2, failure_reply=command_failed
    )
    try:
        await amqp_env.publisher.send_command(
            DeleteConnection(connection_id="boom"), reply_to=topo.replies_queue
        )
        await amqp_env.publisher.send_command(
            DeleteConnection(connection_id="ok"), reply_to=topo.replies_queue
        )
        dead = await get_message(amqp_env.connection, topo.dead_queue, deadline=15)
        replies = [decode(m.type, m.body) for m in await drain(amqp_env.connection, topo.replies_queue)]
    finally:
        await consumer.stop(drain_timeout=5)
    assert ("boom", 2) in seen and ("ok", 1) in seen
    assert dead.headers[H_REASON] == "retries_exhausted"
    assert "internal_error" in str(dead.headers["x-sfconnect-detail"])
    kinds = sorted(type(r).__name__ for r in replies)
    assert kinds == ["CommandFailed", "ConnectionDeleted"]


async def test_an_rpc_call_nobody_answers_times_out_cleanly(amqp_env: AmqpEnv) -> None:
    topo = amqp_env.topology
    rpc = RpcClient(amqp_env.connection, topo, amqp_env.publisher, instance_id=INSTANCE)
    await rpc.start()
    try:
        started = time.monotonic()
        with pytest.raises(RpcTimeout, match="no reply"):
            await rpc.call(RefreshConnectionToken(connection_id="c-1", recipient_key_id="m1"), deadline=0.5)
        elapsed = time.monotonic() - started
        assert 0.45 <= elapsed < 2.0
        assert rpc.pending == 0
        # The command is still queued; a late answer to it is dropped with a log line.
        command = await get_message(amqp_env.connection, topo.builder_queue)
        with structlog.testing.capture_logs() as logs:
            await amqp_env.publisher.send_reply(
                ConnectionDeleted(connection_id="c-1"),
                reply_to=str(command.reply_to),
                correlation_id=command.correlation_id,
            )
            await wait_until(
                lambda: any(e["event"] == "late or unknown RPC reply dropped" for e in logs),
                deadline=5,
                what="the late-reply log line",
            )
    finally:
        await rpc.close()
    assert await queue_depth(amqp_env.connection, topo.rpc_queue(INSTANCE)) == 0


async def test_a_pending_rpc_fails_promptly_when_the_connection_is_lost_and_the_next_call_works(
    amqp_env: AmqpEnv, broker_control: str
) -> None:
    topo = amqp_env.topology
    conn = await amqp_env.connect("rpc")
    publisher = Publisher(conn, topo, app_id="manager")
    await publisher.start()
    rpc = RpcClient(conn, topo, publisher, instance_id=INSTANCE)
    await rpc.start()
    try:
        call = asyncio.create_task(
            rpc.call(RefreshConnectionToken(connection_id="c-1", recipient_key_id="m1"), deadline=30)
        )
        await wait_until(lambda: rpc.pending == 1, deadline=5, what="the call to be pending")
        await asyncio.sleep(0.2)
        started = time.monotonic()
        assert close_my_connections(f"{amqp_env.connection_name}rpc") == 1
        with pytest.raises(RpcConnectionLost):
            await asyncio.wait_for(call, timeout=10)
        assert time.monotonic() - started < 5
        await drain(amqp_env.connection, topo.builder_queue)  # the first command, never answered

        # After reconnecting, the reply queue's consumer is back and a call gets its answer.
        async def refresh(message: RefreshConnectionToken, delivery: Delivery) -> ConnectionDeleted:
            return ConnectionDeleted(connection_id=message.connection_id)

        consumer = await start_consumer(amqp_env, {RefreshConnectionToken: refresh})
        try:
            await wait_until(lambda: conn.connected.is_set(), deadline=15, what="reconnection")
            reply = await _call_when_ready(
                rpc, RefreshConnectionToken(connection_id="c-2", recipient_key_id="m1")
            )
        finally:
            await consumer.stop(drain_timeout=5)
        assert isinstance(reply, ConnectionDeleted) and reply.connection_id == "c-2"
    finally:
        await rpc.close()
        await publisher.close()


async def _call_when_ready(rpc: RpcClient, command: Any, *, deadline: float = 15.0) -> Any:
    """Call, retrying while the connection is still coming back (as the Manager's callers do)."""
    end = time.monotonic() + deadline
    while True:
        try:
            return await rpc.call(command, deadline=5)
        except (RpcConnectionLost, RpcTimeout):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.2)
