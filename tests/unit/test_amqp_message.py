"""Contract ↔ AMQP message mapping: every property of DESIGN §3, UTC timestamps, tolerant header reading."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiormq.abc
import pytest
from aio_pika import IncomingMessage
from aio_pika.abc import DeliveryMode
from pamqp import commands as spec
from pamqp.header import ContentHeader

from shared.amqp import H_ATTEMPT, H_FIRST_ATTEMPT_AT, H_REQUEST_ID, Topology, delivery_of, to_message
from shared.amqp.message import copy_for_republish, decode_message
from shared.contracts import CreateConnection, DeleteConnection, MalformedMessage, encode

pytestmark = pytest.mark.unit

CMD = CreateConnection(
    connection_id="c-1",
    org_id="00D000000000001AAA",
    salesforce_username="int@acme.com",
    admin_email="admin@example.com",
    label="Acme ERP",
    recipient_key_id="m1",
)


def incoming(
    message: Any, *, redelivered: bool = False, routing_key: str = "connection.create"
) -> IncomingMessage:
    """Wrap an outgoing message as the broker would deliver it (no channel: nothing is acked here)."""
    header = ContentHeader(body_size=len(message.body), properties=message.properties)
    deliver = spec.Basic.Deliver(
        consumer_tag="ctag", delivery_tag=1, redelivered=redelivered, exchange="x", routing_key=routing_key
    )
    delivered = aiormq.abc.DeliveredMessage(
        delivery=deliver,
        header=header,
        body=message.body,
        channel=None,  # type: ignore[arg-type]
    )
    return IncomingMessage(delivered, no_ack=True)


def test_a_command_message_carries_every_property_of_the_design() -> None:
    msg = to_message(
        CMD, app_id="manager", correlation_id="corr-1", reply_to="manager.replies", request_id="req-9"
    )
    assert uuid.UUID(str(msg.message_id)).version == 4
    assert msg.correlation_id == "corr-1"
    assert msg.type == "connection.create.v1"
    assert msg.app_id == "manager"
    assert msg.content_type == "application/json"
    assert msg.delivery_mode == DeliveryMode.PERSISTENT
    assert msg.reply_to == "manager.replies"
    assert msg.headers[H_REQUEST_ID] == "req-9"
    assert msg.headers[H_ATTEMPT] == 1
    assert msg.timestamp is not None and msg.timestamp.utcoffset() == timedelta(0)
    assert msg.body == encode(CMD)


def test_every_publish_gets_its_own_message_id() -> None:
    ids = {to_message(CMD, app_id="manager").message_id for _ in range(50)}
    assert len(ids) == 50


def test_a_delivery_reads_back_ids_attempt_and_utc_times() -> None:
    first = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5)))
    msg = to_message(
        CMD,
        app_id="manager",
        correlation_id="corr-1",
        reply_to="r",
        request_id="req-9",
        attempt=3,
        first_attempt_at=first,
    )
    delivery = delivery_of(incoming(msg, redelivered=True))
    assert delivery.message_id == msg.message_id
    assert delivery.correlation_id == "corr-1"
    assert delivery.reply_to == "r"
    assert delivery.request_id == "req-9"
    assert delivery.message_type == "connection.create.v1"
    assert delivery.redelivered is True
    assert delivery.attempt == 3
    assert delivery.first_attempt_at == datetime(2026, 3, 1, 17, 0, tzinfo=UTC)
    assert delivery.first_attempt_at.tzinfo is UTC
    assert delivery.timestamp is not None and delivery.timestamp.tzinfo is not None
    assert delivery.routing_key == "connection.create"
    assert decode_message(incoming(msg)) == CMD


def test_a_delivery_without_our_headers_defaults_to_the_first_attempt_at_its_timestamp() -> None:
    msg = to_message(CMD, app_id="x")
    msg.headers.clear()
    msg.correlation_id = None
    delivery = delivery_of(incoming(msg))
    assert delivery.attempt == 1
    assert delivery.correlation_id == msg.message_id  # falls back to the message id
    assert delivery.timestamp is not None
    assert delivery.first_attempt_at == delivery.timestamp


@pytest.mark.parametrize("bad", ["zero", -4, 0, None, True, b"7x"])
def test_odd_attempt_headers_never_raise(bad: Any) -> None:
    msg = to_message(CMD, app_id="x")
    msg.headers[H_ATTEMPT] = bad
    msg.headers[H_FIRST_ATTEMPT_AT] = "not a date"
    delivery = delivery_of(incoming(msg))
    assert delivery.attempt == 1
    assert delivery.first_attempt_at.tzinfo is not None


def test_a_wrong_content_type_is_a_typed_decode_error() -> None:
    msg = to_message(DeleteConnection(connection_id="c-2"), app_id="x")
    msg.content_type = "text/plain"
    with pytest.raises(MalformedMessage) as info:
        decode_message(incoming(msg))
    assert info.value.reason == "bad_content_type"


def test_a_republished_copy_has_a_new_id_and_no_broker_headers() -> None:
    msg = to_message(CMD, app_id="manager", correlation_id="corr-1")
    msg.headers["x-death"] = [{"reason": "expired"}]
    msg.headers["x-delivery-count"] = 2
    copy = copy_for_republish(incoming(msg), extra_headers={H_ATTEMPT: 2})
    assert copy.message_id != msg.message_id
    assert copy.correlation_id == "corr-1"
    assert copy.type == msg.type and copy.body == msg.body
    assert "x-death" not in copy.headers and "x-delivery-count" not in copy.headers
    assert copy.headers[H_ATTEMPT] == 2


def test_topology_names_follow_the_design_and_carry_the_prefix() -> None:
    plain = Topology()
    assert plain.commands_exchange == "sfconnect.commands"
    assert plain.builder_queue == "builder.commands"
    assert plain.dead_exchange == "sfconnect.dead"
    assert plain.dead_queue == "sfconnect.dead-letters"
    assert plain.replies_queue == "manager.replies"
    assert plain.rpc_queue("m1") == "manager.rpc.m1"
    assert plain.retry_queue(30) == "sfconnect.retry.30"
    test = Topology(prefix="t1.")
    assert all(n.startswith("t1.") for n in [*test.queue_names(["i"]), *test.exchange_names()])


def test_the_retry_tier_is_the_smallest_delay_at_least_the_wanted_one() -> None:
    topo = Topology(retry_delays=(30, 1, 5))
    assert topo.retry_delays == (1, 5, 30)
    assert [topo.retry_tier(x) for x in (None, 0, 1, 2, 5, 6, 30, 999)] == [1, 1, 1, 5, 5, 30, 30, 30]


def test_queue_arguments_are_explicit() -> None:
    topo = Topology(delivery_limit=7)
    work = topo.queue_spec(topo.builder_queue).arguments
    assert work == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 7,
        "x-dead-letter-exchange": "sfconnect.dead",
    }
    retry = topo.queue_spec(topo.retry_queue(5)).arguments
    assert retry["x-message-ttl"] == 5000 and retry["x-dead-letter-exchange"] == "sfconnect.commands"
    rpc = topo.queue_spec(topo.rpc_queue("m1"))
    assert rpc.durable and rpc.arguments == {"x-queue-type": "classic", "x-expires": 300_000}
    with pytest.raises(KeyError):
        topo.queue_spec("somebody.else")


async def test_delete_all_refuses_the_production_topology() -> None:
    with pytest.raises(ValueError, match="prefix"):
        await Topology().delete_all(None)  # type: ignore[arg-type]
