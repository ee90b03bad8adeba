"""The Builder is SIGKILLed in the middle of creates: every command is redelivered to the restarted Builder
and completes exactly once (one app, one permission-set assignment, one reply applied per connection).

Several creates are in flight at different stages when the kill lands (staggered starts, simulator latency
and a slow deploy widen the window). The redelivered commands wait until the killed delivery's connection
lease expires (it is no longer renewed: about 20 s), then complete on their next retry.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

import pytest

from tests.fault.conftest import Launch
from tests.fault.harness import ALL_SCOPES, Api, duplicates, eventually, outcome_figures, write_figures

pytestmark = pytest.mark.fault

CREATE, CREATED = "connection.create.v1", "connection.created.v1"
IN_FLIGHT = 4
SETTLE_DEADLINE_S = 90
MID_FLIGHT = ("app created, reply not applied", "pre-authorized, app not created")


async def _stages(api: Api, ids: list[str]) -> dict[str, str]:
    """Where each create is, as the org and the Manager show it."""
    org = await api.sim_org()
    views = await api.statuses(ids)
    app_names = {a.get("fullName") or a.get("full_name") for a in org["apps"]}
    assigned = {a.get("PermissionSetName") for a in org["assignments"]}
    out = {}
    for cid in ids:
        short = cid.removeprefix("con_")[:20]  # app and permission set names derive from the id
        if views.get(cid, {}).get("status") == "active":
            out[cid] = "active (reply applied)"
        elif any(n and short in n for n in app_names):
            out[cid] = "app created, reply not applied"
        elif any(n and short in n for n in assigned):
            out[cid] = "pre-authorized, app not created"
        else:
            out[cid] = "not started in the org"
    return out


async def test_builder_killed_with_creates_in_flight_redelivers_and_completes_each_exactly_once(
    launch: Launch,
) -> None:
    api = await launch()
    stack = api.stack
    api.api_key = stack.create_api_key("kill", *ALL_SCOPES)
    org_id = await api.authorize()
    await api.patch_org(latency_ms=150, deploy_seconds=2.0)

    ids: list[str] = []
    for i in range(IN_FLIGHT):  # staggered, so the kill finds them at different stages
        status, created = await api.create(org_id, f"in-flight-{i}")
        assert status == 202, created
        ids.append(created["id"])
        await asyncio.sleep(0.7)

    async def first_app_exists() -> bool:
        return bool((await api.sim_org())["apps"])

    await eventually(first_app_exists, deadline_s=60, what="the first app exists in the org", every_s=0.05)
    victim = stack.procs["builder"]
    assert victim.popen is not None
    os.killpg(victim.popen.pid, signal.SIGKILL)
    victim.popen.wait(10)
    killed_at = time.monotonic()
    stages_at_kill = await _stages(api, ids)
    # The scenario itself: the Builder died with work of its own half done in the org (not yet active).
    assert any(stage in MID_FLIGHT for stage in stages_at_kill.values()), stages_at_kill
    await api.patch_org(latency_ms=0, deploy_seconds=0.0)
    await asyncio.to_thread(lambda: stack.add_builder("builder-restarted"))

    views = await api.wait_settled(ids, deadline_s=SETTLE_DEADLINE_S)
    waited = time.monotonic() - killed_at
    org = await api.sim_org()
    apps = [a.get("fullName") or a.get("full_name") for a in org["apps"]]
    sfc_assignments = [a["PermissionSetName"] for a in org["assignments"] if a.get("PermissionSetName")]
    deliveries = await api.metric("builder-restarted", "builder_commands_total", type=CREATE)
    figures: dict[str, Any] = outcome_figures(views, ids)
    figures.update(
        stages_at_kill=dict(Counter(stages_at_kill.values())),
        redeliveries_to_the_restarted_builder=int(deliveries),
        apps_in_org=len(apps),
        duplicated_apps=len(duplicates(apps)),
        permission_set_assignments=len(sfc_assignments),
        duplicated_assignments=len(duplicates(sfc_assignments)),
        replies_applied=int(
            await api.metric("manager", "sfconnect_manager_replies_total", type=CREATED, outcome="applied")
        ),
        seconds_from_kill_to_all_settled=round(waited, 1),
    )
    write_figures("builder-kill", figures)

    # Never: a duplicate app or approval, a lost or failed connection, a second reply applied.
    assert not duplicates(apps) and not duplicates(sfc_assignments), figures
    assert figures["lost"] == 0 and figures["failed"] == 0, figures
    assert len(apps) <= len(ids) and figures["replies_applied"] == figures["completed"]
    assert deliveries >= 1, "the killed Builder's commands were not redelivered"
    assert all(stack.procs[n].alive() for n in ("builder-restarted", "manager"))
    for view in views.values():
        if view["status"] == "active":
            assert view["app"]["full_name"] in apps
    assert figures["completed"] == len(ids), f"not all active {SETTLE_DEADLINE_S} s after the kill: {figures}"
    assert len(apps) == len(ids) and len(sfc_assignments) == len(ids)
