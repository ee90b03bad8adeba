"""Consumers, replies and RPC come back by themselves after the broker drops connections or restarts,
and no confirmed command is lost."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from shared.amqp import AmqpError, Consumer, Delivery, Publisher, RpcClient, RpcConnectionLost, RpcTimeout
from shared.contracts import ConnectionDeleted, DeleteConnection, RefreshConnectionToken
from tests.amqp_support import RPC_INSTANCES, AmqpEnv, amqp_env, close_my_connections, rabbitmqctl, wait_until

pytestmark = pytest.mark.integration
__all__ = ["amqp_env"]

RPC_INSTANCE = RPC_INSTANCES[1]


@dataclass
class Traffic:
    """What a run of commands through a disruption produced."""

    confirmed: list[str] = field(default_factory=list)
    publish_failures: Counter[str] = field(default_factory=Counter)
    handled: Counter[str] = field(default_factory=Counter)
    replied: Counter[str] = field(default_factory=Counter)
    confirmed_before: int = 0
    confirmed_after: int = 0


async def run_through(
    env: AmqpEnv, disrupt: Callable[[], Awaitable[None]], *, commands: int, settle_deadline: float
) -> Traffic:
    """Publish ``commands`` commands while ``disrupt`` runs; wait until every confirmed one was handled and answered."""
    topo = env.topology
    traffic = Traffic()
    builder_conn = await env.connect("builder")
    manager_conn = await env.connect("manager")
    builder_pub = Publisher(builder_conn, topo, app_id="builder")
    manager_pub = Publisher(manager_conn, topo, app_id="manager", deadline=2)
    await builder_pub.start()
    await manager_pub.start()

    async def delete(message: DeleteConnection, delivery: Delivery) -> ConnectionDeleted:
        traffic.handled[message.connection_id] += 1
        await asyncio.sleep(0.005)  # some work in flight when the connection drops
        return ConnectionDeleted(connection_id=message.connection_id)

    async def refresh(message: RefreshConnectionToken, delivery: Delivery) -> ConnectionDeleted:
        return ConnectionDeleted(connection_id=message.connection_id)

    async def on_reply(message: ConnectionDeleted, delivery: Delivery) -> None:
        traffic.replied[message.connection_id] += 1

    builder = Consumer(
        builder_conn,
        topo,
        topo.builder_queue,
        {DeleteConnection: delete, RefreshConnectionToken: refresh},
        publisher=builder_pub,
        prefetch=8,
    )
    replies = Consumer(
        manager_conn, topo, topo.replies_queue, {ConnectionDeleted: on_reply}, publisher=manager_pub
    )
    rpc = RpcClient(manager_conn, topo, manager_pub, instance_id=RPC_INSTANCE)
    for part in (builder, replies, rpc):
        await part.start()

    async def publish_all() -> None:
        # Like the Manager: a publish that fails with a retryable error is tried again until confirmed.
        for i in range(commands):
            cid = f"c-{i}"
            end = time.monotonic() + 90
            while True:
                try:
                    await manager_pub.send_command(
                        DeleteConnection(connection_id=cid), reply_to=topo.replies_queue
                    )
                except AmqpError as exc:
                    traffic.publish_failures[type(exc).__name__] += 1
                    assert time.monotonic() < end, f"{cid} never confirmed"
                    await asyncio.sleep(0.1)
                    continue
                traffic.confirmed.append(cid)
                break
            await asyncio.sleep(0.02)

    try:
        publishing = asyncio.create_task(publish_all())
        await wait_until(
            lambda: len(traffic.confirmed) >= commands // 4, deadline=30, what="traffic to start"
        )
        traffic.confirmed_before = len(traffic.confirmed)
        await disrupt()
        traffic.confirmed_after = len(traffic.confirmed)
        await asyncio.wait_for(publishing, timeout=120)
        await wait_until(
            lambda: (
                set(traffic.confirmed) <= set(traffic.handled)
                and set(traffic.confirmed) <= set(traffic.replied)
            ),
            deadline=settle_deadline,
            what="every confirmed command handled and answered",
        )
        reply = await call_until_answered(
            rpc, RefreshConnectionToken(connection_id="rpc-after", recipient_key_id="m1")
        )
        assert isinstance(reply, ConnectionDeleted) and reply.connection_id == "rpc-after"
    finally:
        for part in (rpc,):
            await part.close()
        for consumer in (builder, replies):
            await consumer.stop(drain_timeout=5)
    return traffic


async def call_until_answered(
    rpc: RpcClient, command: RefreshConnectionToken, *, deadline: float = 30
) -> object:
    end = time.monotonic() + deadline
    while True:
        try:
            return await rpc.call(command, deadline=5)
        except (RpcConnectionLost, RpcTimeout):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.2)


def report(what: str, traffic: Traffic) -> None:
    duplicates = sum(n - 1 for n in traffic.handled.values())
    print(
        f"\n{what}: confirmed={len(traffic.confirmed)} handled={len(traffic.handled)} "
        f"redelivered-duplicates={duplicates} replied={len(traffic.replied)} "
        f"publish-failures={dict(traffic.publish_failures)} "
        f"confirmed-before/after-disruption={traffic.confirmed_before}/{traffic.confirmed_after}"
    )


async def test_consumers_and_rpc_resume_after_the_broker_closes_their_connections(amqp_env: AmqpEnv) -> None:
    async def close_connections() -> None:
        closed = await asyncio.to_thread(close_my_connections, f"{amqp_env.connection_name}")
        assert closed >= 3  # builder, manager and the fixture's own connection

    traffic = await run_through(amqp_env, close_connections, commands=150, settle_deadline=30)
    report("close_connection", traffic)
    assert len(traffic.confirmed) == 150
    assert traffic.confirmed_after < 150, "the disruption happened while commands were still being sent"
    assert set(traffic.handled) == set(traffic.confirmed)


async def test_consumers_and_rpc_resume_after_a_broker_app_restart(amqp_env: AmqpEnv) -> None:
    # This one is global: stop_app/start_app restarts the broker for every engineer's tests on this machine,
    # so it is the only test that does it, and it waits (with a deadline) until the broker answers again.
    async def restart_broker() -> None:
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup", "--timeout", "60", timeout=90)

    traffic = await run_through(amqp_env, restart_broker, commands=150, settle_deadline=60)
    report("stop_app/start_app", traffic)
    assert len(traffic.confirmed) == 150
    assert traffic.confirmed_after < 150, "the disruption happened while commands were still being sent"
    assert set(traffic.handled) == set(traffic.confirmed)
