"""A reply that arrives after its RPC call gave up (real broker): handed to ``on_unmatched`` or dropped."""

from __future__ import annotations

import pytest
import structlog

from shared.amqp import RpcClient, RpcTimeout
from shared.contracts import ConnectionDeleted, Contract, RefreshConnectionToken
from tests.amqp_support import INSTANCE, AmqpEnv, amqp_env, get_message, queue_depth, wait_until

pytestmark = pytest.mark.integration
__all__ = ["amqp_env"]

REFRESH = RefreshConnectionToken(connection_id="c-late", recipient_key_id="m1")


async def _time_out_then_answer_late(env: AmqpEnv, rpc: RpcClient) -> None:
    with pytest.raises(RpcTimeout):
        await rpc.call(REFRESH, deadline=0.3)
    command = await get_message(env.connection, env.topology.builder_queue)
    await env.publisher.send_reply(
        ConnectionDeleted(connection_id="c-late"),
        reply_to=str(command.reply_to),
        correlation_id=command.correlation_id,
    )


async def test_a_late_reply_is_handed_to_on_unmatched_decoded(amqp_env: AmqpEnv) -> None:
    seen: list[Contract] = []

    async def keep(reply: Contract) -> None:
        seen.append(reply)

    rpc = RpcClient(
        amqp_env.connection, amqp_env.topology, amqp_env.publisher, instance_id=INSTANCE, on_unmatched=keep
    )
    await rpc.start()
    try:
        await _time_out_then_answer_late(amqp_env, rpc)
        await wait_until(lambda: bool(seen), deadline=5, what="the late reply reaching on_unmatched")
    finally:
        await rpc.close()
    assert seen == [ConnectionDeleted(connection_id="c-late")]
    assert await queue_depth(amqp_env.connection, amqp_env.topology.rpc_queue(INSTANCE)) == 0


async def test_a_failing_on_unmatched_is_logged_and_the_reply_is_still_acked(amqp_env: AmqpEnv) -> None:
    async def refuse(reply: Contract) -> None:
        raise LookupError("no such connection")

    rpc = RpcClient(
        amqp_env.connection, amqp_env.topology, amqp_env.publisher, instance_id=INSTANCE, on_unmatched=refuse
    )
    await rpc.start()
    try:
        with structlog.testing.capture_logs() as logs:
            await _time_out_then_answer_late(amqp_env, rpc)
            await wait_until(
                lambda: any(e["event"] == "late RPC reply not applied" for e in logs),
                deadline=5,
                what="the log line of the refused late reply",
            )
        event = next(e for e in logs if e["event"] == "late RPC reply not applied")
        assert event["error"] == "LookupError"
    finally:
        await rpc.close()
    assert await queue_depth(amqp_env.connection, amqp_env.topology.rpc_queue(INSTANCE)) == 0
