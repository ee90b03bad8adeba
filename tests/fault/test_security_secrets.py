"""No credential the system handles is ever found in clear in a database, a queued message or a log."""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
import pytest

from devtools.demo import run_demo
from shared.amqp import Topology, command_message
from shared.contracts import RefreshConnectionToken
from tests.fault.conftest import Launch
from tests.fault.harness import ALL_SCOPES, FaultStack, eventually, write_figures
from tests.fault.secrets_scan import keep_harvesting, scan

pytestmark = pytest.mark.fault


async def _leave_messages_in_queues(stack: FaultStack, connection_id: str) -> int:
    """Ask the Builder (directly on the broker) for a refresh whose reply nobody consumes, and send it
    one poison message; wait until both sit in their queues. Returns how many messages wait."""
    topo = Topology(prefix=stack.amqp_prefix)
    conn = await aio_pika.connect(stack.amqp_url, timeout=10)
    try:
        channel = await conn.channel(publisher_confirms=True)
        command = RefreshConnectionToken(
            connection_id=connection_id, recipient_key_id=stack.recipient[0].split(":")[0]
        )
        await channel.default_exchange.publish(
            command_message(command, app_id="manager", reply_to=topo.replies_queue),
            routing_key=topo.builder_queue,
        )
        await channel.default_exchange.publish(
            aio_pika.Message(b"{not json", content_type="application/json", type=command.message_type),
            routing_key=topo.builder_queue,
        )

        async def waiting() -> int:
            replies = await channel.declare_queue(topo.replies_queue, passive=True)
            dead = await channel.declare_queue(topo.dead_queue, passive=True)
            counts = (
                replies.declaration_result.message_count or 0,
                dead.declaration_result.message_count or 0,
            )
            return sum(counts) if all(counts) else 0

        return int(
            await eventually(waiting, deadline_s=30, what="a reply and a dead letter wait in the broker")
        )
    finally:
        await conn.close()


async def test_after_the_demo_flow_no_issued_secret_is_in_the_databases_the_queues_or_the_logs(
    launch: Launch,
) -> None:
    api = await launch()
    stack = api.stack
    harvester = asyncio.create_task(keep_harvesting(stack))  # the demo deletes its connection (and key)
    try:
        summary = await run_demo(stack)
    finally:
        harvester.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await harvester
    assert summary[-1][0] == "delete the connection"

    # Leave state behind too: an active connection (encrypted token, private key) refreshed once.
    api.api_key = stack.create_api_key("secrets", *ALL_SCOPES)
    org_id = (await api.sim_org())["org_id"]
    status, created = await api.create(org_id, "left-active")
    assert status == 202, created

    async def active() -> bool:
        return (await api.connection(created["id"]))[1]["status"] == "active"

    await eventually(active, deadline_s=60, what="the second connection is active")
    assert (await api.token(created["id"], force_refresh=True))[0] == 200

    # And leave messages in the broker: a refresh reply (a freshly minted, sealed token) waiting for a
    # stopped Manager, and a dead letter.
    await asyncio.to_thread(stack.procs["manager"].stop)
    queued = await _leave_messages_in_queues(stack, created["id"])
    await asyncio.to_thread(stack.stop_services)
    report = await scan(stack, api.served_tokens)
    figures = report.figures()
    write_figures("secret-scan.demo-flow", figures)
    assert report.hits == [], figures["hit_places"]

    # The scan is not vacuous: it looked for every kind of secret, in every kind of place...
    for kind in (
        "access_token",
        "refresh_token",
        "authorization_code",
        "received_assertion",
        "received_client_secret",
        "connection_private_key",
        "builder_org_refresh_token",
        "manager_api_key",
        "builder_admin_api_key",
        "configured_key",
        "served_access_token",
    ):
        assert report.secrets.get(kind, 0) > 0, f"no {kind} was collected: {report.secrets}"
    assert report.documents > 0 and report.log_bytes > 0 and report.messages >= queued >= 2
    # ...and it finds a secret that does leak.
    planted = stack.logs_dir / "planted.log"
    planted.write_text(f"oops {next(iter(api.served_tokens))}\n")
    leaked = await scan(stack, api.served_tokens)
    planted.unlink()
    assert {where for _, where in leaked.hits} == {"log planted.log"}
