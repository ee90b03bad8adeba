"""Helpers for the AMQP tests: an isolated topology per test, reading queues with a deadline,
and closing only this test's broker connections (other engineers' tests share the broker)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shared.amqp import Publisher, Topology, connect
from tests import infra

INSTANCE = "i1"
RPC_INSTANCES = (INSTANCE, "recovery")  # deleted after every test


@dataclass
class AmqpEnv:
    """One test's connection, topology (declared) and publisher."""

    url: str
    prefix: str
    topology: Topology
    connection: AbstractRobustConnection
    publisher: Publisher
    extra_connections: list[AbstractRobustConnection] = field(default_factory=list)

    @property
    def connection_name(self) -> str:
        return f"sfconnect-test-{self.prefix}"

    async def connect(self, role: str) -> AbstractRobustConnection:
        """Another robust connection, named so ``close_my_connections`` finds it."""
        conn = await connect(self.url, name=f"{self.connection_name}{role}")
        self.extra_connections.append(conn)
        return conn


@pytest.fixture
async def amqp_env(amqp_url: str, amqp_prefix: str) -> AsyncIterator[AmqpEnv]:
    topology = Topology(prefix=amqp_prefix, delivery_limit=5, retry_delays=(1, 2), rpc_expires_ms=60_000)
    connection = await connect(amqp_url, name=f"sfconnect-test-{amqp_prefix}main")
    channel = await connection.channel()
    await topology.declare_manager(channel, INSTANCE)
    await channel.close()
    publisher = Publisher(connection, topology, app_id="manager", deadline=5.0)
    await publisher.start()
    env = AmqpEnv(amqp_url, amqp_prefix, topology, connection, publisher)
    try:
        yield env
    finally:
        for conn in [*env.extra_connections, connection]:
            await conn.close()
        cleaner = await aio_pika.connect(amqp_url, timeout=10)
        try:
            await topology.delete_all(await cleaner.channel(), instance_ids=RPC_INSTANCES)
        finally:
            await cleaner.close()


async def get_message(
    connection: AbstractRobustConnection, queue: str, *, deadline: float = 10.0
) -> AbstractIncomingMessage:
    """The next message of ``queue`` (acked), waiting at most ``deadline`` seconds."""
    async with connection.channel() as channel:
        q = await channel.get_queue(queue, ensure=False)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            message = await q.get(no_ack=True, fail=False, timeout=5)
            if message is not None:
                return message
            await asyncio.sleep(0.05)
    raise AssertionError(f"no message on {queue} within {deadline:g}s")


async def drain(connection: AbstractRobustConnection, queue: str) -> list[AbstractIncomingMessage]:
    """Every message queued right now in ``queue`` (acked)."""
    out: list[AbstractIncomingMessage] = []
    async with connection.channel() as channel:
        q = await channel.get_queue(queue, ensure=False)
        while (message := await q.get(no_ack=True, fail=False, timeout=5)) is not None:
            out.append(message)
    return out


async def queue_depth(connection: AbstractRobustConnection, queue: str) -> int:
    async with connection.channel() as channel:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def wait_until(predicate: Any, *, deadline: float, what: str, interval: float = 0.05) -> None:
    """Poll a sync or async predicate until true; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} did not happen within {deadline:g}s")


def rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    """Run the local ``rabbitmqctl``; the test fails with what is needed when it cannot control the
    session's broker (AMQP_URL or testcontainers may have chosen another one)."""
    if failure := infra.broker_control_failure(infra.INFRA.amqp_url):
        pytest.fail(failure, pytrace=False)
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=True)
    return done.stdout


def close_my_connections(name_prefix: str) -> int:
    """Close (from the broker side) every connection whose client-provided name starts with ``name_prefix``."""
    listing = rabbitmqctl("list_connections", "pid", "client_properties", "--no-table-headers", "--quiet")
    pids = []
    for line in listing.splitlines():
        pid, _, props = line.partition("\t")
        # The prefix holds a random hex part, so finding it in the client properties is specific enough.
        if "connection_name" in props and name_prefix in props:
            pids.append(pid.strip())
    closers = [
        subprocess.Popen(
            ["rabbitmqctl", "close_connection", pid, "closed by an sfconnect recovery test"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for pid in pids
    ]
    for closer in closers:
        _, err = closer.communicate(timeout=60)
        assert closer.returncode == 0, err
    return len(pids)
