"""The fixtures reach real servers over sockets: a broker round trip and a real unique index."""

from __future__ import annotations

import aio_pika
import pytest
from pymongo.errors import DuplicateKeyError

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
