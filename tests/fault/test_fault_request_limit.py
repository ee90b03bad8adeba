"""REQUEST_LIMIT_EXCEEDED that does not clear: the Builder retries the create a bounded number of times
(``COMMAND_MAX_ATTEMPTS``), each time through the delayed-retry queues, then the connection fails with
the typed code ``request_limit_exceeded`` and the command is dead-lettered ``retries_exhausted``.

The limit asks for a 60 s retry, which lands in the 120 s delay tier, and the Builder has no setting that
shortens it. So that this runs in ``make test`` the test plays the tier's clock: each command parked in a
delay queue is moved back to the Builder's queue at once (body, properties and ``x-sfconnect-*``
headers unchanged), as the broker's dead-lettering does when the tier's TTL runs out. What is measured
is the bound and the outcome, not the delay (the slow ``-k clears`` test in test_fault_salesforce.py
waits the real 120 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aio_pika
import pytest

from shared.amqp import Topology
from shared.amqp.message import H_ATTEMPT, H_REASON, copy_for_republish
from tests.fault.conftest import Launch
from tests.fault.harness import ALL_SCOPES, Api, write_figures

pytestmark = pytest.mark.fault

ATTEMPTS = 3
CREATE = "connection.create.v1"


async def _play_the_delay_tiers(api: Api, moved: list[tuple[int, int]]) -> None:
    """Until cancelled: move every message parked in a delay tier back to the Builder's queue at once;
    notes (tier seconds, x-sfconnect-attempt) of each."""
    topology = Topology(prefix=api.stack.amqp_prefix)
    conn = await aio_pika.connect(api.stack.amqp_url, timeout=10)
    try:
        channel = await conn.channel()
        commands = await channel.get_exchange(topology.commands_exchange, ensure=True)
        tiers = {
            d: await channel.get_queue(topology.retry_queue(d), ensure=True) for d in topology.retry_delays
        }
        while True:
            for delay, queue in tiers.items():
                message = await queue.get(no_ack=False, fail=False, timeout=10)
                if message is None:
                    continue
                await commands.publish(copy_for_republish(message), routing_key=topology.builder_queue)
                await message.ack()
                moved.append((delay, int(str((message.headers or {}).get(H_ATTEMPT, 0)))))
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _refused_calls(api: Api) -> int:
    """Salesforce calls the Builder saw refused the way the limit refuses them (REST 403, SOAP fault 500)."""
    total = 0.0
    for status in ("403", "500"):
        total += await api.metric("builder", "builder_salesforce_calls_total", outcome=status)
    return int(total)


async def _dead_letter_reasons(api: Api) -> list[str]:
    topology = Topology(prefix=api.stack.amqp_prefix)
    conn = await aio_pika.connect(api.stack.amqp_url, timeout=10)
    reasons = []
    try:
        channel = await conn.channel()
        queue = await channel.get_queue(topology.dead_queue, ensure=True)
        while (message := await queue.get(no_ack=False, fail=False, timeout=10)) is not None:
            reasons.append(str((message.headers or {}).get(H_REASON)))
        await channel.close()  # every dead letter got is requeued (the secret scan reads them too)
    finally:
        await conn.close()
    return reasons


async def test_a_request_limit_that_stays_spent_is_retried_a_bounded_number_of_times_then_fails_typed(
    launch: Launch,
) -> None:
    api = await launch(builder_env={"COMMAND_MAX_ATTEMPTS": str(ATTEMPTS)})
    api.api_key = api.stack.create_api_key("sf-limit-bounded", *ALL_SCOPES)
    org_id = await api.authorize()
    org = await api.sim_org()
    await api.patch_org(api_limit=org["knobs"]["api_requests_used"])  # every API call is now refused

    refused_before = await _refused_calls(api)
    moved: list[tuple[int, int]] = []
    mover = asyncio.create_task(_play_the_delay_tiers(api, moved))
    try:
        started = time.monotonic()
        status, created = await api.create(org_id, "limit-stays-spent")
        assert status == 202, created
        views = await api.wait_settled([created["id"]], deadline_s=30)
        took = time.monotonic() - started
    finally:
        mover.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await mover
    view = views.get(created["id"], {})
    deliveries = int(await api.metric("builder", "builder_commands_total", type=CREATE))
    retried = int(await api.metric("builder", "builder_commands_total", type=CREATE, outcome="retry"))
    refused_calls = await _refused_calls(api) - refused_before
    dead = await _dead_letter_reasons(api)
    apps = [n for n in await api.sim_apps() if n and n.startswith("sfc_")]
    figures = {
        "max_attempts": ATTEMPTS,
        "status": view.get("status"),
        "code": (view.get("error") or {}).get("code"),
        "deliveries": deliveries,
        "deliveries_retried": retried,
        "salesforce_calls_refused_with_the_limit": refused_calls,
        "retries_parked_by_tier_seconds": [tier for tier, _ in moved],
        "dead_letter_reasons": dead,
        "apps_left": len(apps),
        "seconds_to_failure_with_the_tiers_fast_forwarded": round(took, 1),
    }
    write_figures("salesforce-limit-bounded", figures)

    assert view.get("status") == "failed" and figures["code"] == "request_limit_exceeded", figures
    assert deliveries == ATTEMPTS and retried == ATTEMPTS, figures  # the bound, no more, no fewer
    assert [attempt for _, attempt in moved] == list(range(2, ATTEMPTS + 1)), moved
    assert all(tier == 120 for tier, _ in moved), f"the limit's retry did not use the 120 s tier: {moved}"
    assert refused_calls == ATTEMPTS, figures  # each delivery reached Salesforce once and was refused
    assert dead == ["retries_exhausted"], dead
    assert apps == [], f"the failed connection left apps behind: {apps}"
    assert all(api.stack.procs[n].alive() for n in api.stack.services())
