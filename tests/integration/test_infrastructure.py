"""The fixtures reach real servers over sockets (a broker round trip, a real unique index), and the
infrastructure choices fail with one clear message when a configured server does not answer."""

from __future__ import annotations

import time

import aio_pika
import pytest
from pymongo.errors import DuplicateKeyError

from tests import infra

pytestmark = pytest.mark.integration


async def test_a_message_makes_a_round_trip_through_the_real_broker(amqp_url: str, amqp_prefix: str) -> None:
    conn = await aio_pika.connect_robust(amqp_url)
    try:
        ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
        queue = await ch.declare_queue(f"{amqp_prefix}roundtrip", auto_delete=True)
        await ch.default_exchange.publish(aio_pika.Message(b"ping", message_id="m1"), routing_key=queue.name)
        msg = await queue.get(timeout=5)
        assert msg is not None
        await msg.ack()
        assert msg.body == b"ping"
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await conn.close()


async def test_a_unique_index_on_the_real_database_refuses_a_duplicate(mongo_db) -> None:  # type: ignore[no-untyped-def]
    await mongo_db.things.create_index("name", unique=True)
    await mongo_db.things.insert_one({"name": "acme"})
    with pytest.raises(DuplicateKeyError):
        await mongo_db.things.insert_one({"name": "acme"})
    assert await mongo_db.things.count_documents({}) == 1


def test_a_mongodb_url_that_answers_passes_the_ping(mongodb_url: str) -> None:
    started = time.monotonic()
    infra.mongodb_ping(mongodb_url, deadline_s=10)
    assert time.monotonic() - started < 10


def test_a_mongodb_url_nobody_answers_fails_with_one_clear_message_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = infra.free_port()
    monkeypatch.setenv("MONGODB_URL", f"mongodb://app:hunter2@127.0.0.1:{port}/")
    monkeypatch.setattr(infra, "MONGODB_PING_DEADLINE_S", 0.5)
    started = time.monotonic()
    with pytest.raises(RuntimeError) as info, infra.mongodb():
        pass
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert message.startswith(f"MONGODB_URL is set but no MongoDB-wire server at 127.0.0.1:{port} answered")
    assert "hunter2" not in message and "fix or unset MONGODB_URL" in message


def test_an_amqp_url_nobody_answers_fails_with_one_clear_message_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = infra.free_port()
    monkeypatch.setenv("AMQP_URL", f"amqp://app:hunter2@127.0.0.1:{port}/")
    with pytest.raises(RuntimeError) as info, infra.rabbitmq():
        pass
    message = str(info.value)
    assert message.startswith(f"AMQP_URL is set but no broker at 127.0.0.1:{port} accepted a connection")
    assert "hunter2" not in message


def test_a_remote_broker_is_not_controllable_with_the_local_rabbitmqctl() -> None:
    problem = infra.broker_control_problem("amqp://guest:guest@10.255.0.1:5672/")
    assert problem == "the broker at 10.255.0.1:5672 is not on this machine"
    failure = infra.broker_control_failure("amqp://guest:guest@10.255.0.1:5672/")
    assert failure is not None
    assert failure.startswith("this test controls the broker with rabbitmqctl, but the broker at 10.255.0.1")
    assert "AMQP_URL" in failure and "SFCONNECT_TESTCONTAINERS=off" in failure


def test_a_loopback_port_the_local_node_does_not_listen_on_is_not_controllable() -> None:
    port = infra.free_port()  # e.g. a testcontainers broker mapped to a random local port
    problem = infra.broker_control_problem(f"amqp://guest:guest@localhost:{port}/")
    assert problem is not None
    assert f"not on port {port}" in problem or "rabbitmqctl" in problem


def test_the_session_broker_is_controllable_exactly_when_it_is_the_local_node(amqp_url: str) -> None:
    chosen = infra.INFRA.used["rabbitmq"]
    assert infra.INFRA.amqp_url == amqp_url
    problem = infra.broker_control_problem(amqp_url)
    if chosen.startswith("local broker"):
        assert problem is None, f"the local broker should be controllable: {problem}"
    elif chosen.startswith("testcontainers"):
        assert problem is not None
