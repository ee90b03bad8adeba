"""Broker-wide faults on the real RabbitMQ: an app restart with 100 connections in flight, and a memory
alarm that blocks every publisher. Both disturb the whole shared broker: each restores it in ``finally``.

Restart: every connection ends ``active`` or failed with a typed code; none is lost; no app is created
twice in the simulated org. Memory alarm: publishes time out with a clear error, the API stays responsive,
and what was asked during the alarm completes once the alarm clears.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.fault.broker import memory_alarm, memory_alarm_raised, memory_watermark, restart_broker
from tests.fault.conftest import Launch
from tests.fault.harness import (
    ALL_SCOPES,
    Api,
    duplicates,
    eventually,
    outcome_figures,
    write_figures,
)

pytestmark = pytest.mark.fault

IN_FLIGHT = 100
SETTLE_DEADLINE_S = 90
FAST_SWEEPER = {"SWEEPER_INTERVAL_SECONDS": "3", "PUBLISH_DEADLINE_SECONDS": "2"}


async def _active_count(api: Api, ids: list[str]) -> int:
    views = await api.statuses(ids)
    return sum(1 for v in views.values() if v["status"] == "active")


def _log_events(api: Api, proc: str, event: str) -> list[dict[str, Any]]:
    path = api.stack.logs_dir / f"{proc}.log"
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if f'"event": "{event}"' in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


async def test_a_broker_restart_with_100_connections_in_flight_loses_and_duplicates_nothing(
    launch: Launch,
) -> None:
    api = await launch(builder_env={"COMMAND_PREFETCH": "16"}, manager_env=FAST_SWEEPER)
    stack = api.stack
    api.api_key = stack.create_api_key("broker-restart", *ALL_SCOPES)
    org_id = await api.authorize()

    started = time.monotonic()
    created = await asyncio.gather(*(api.create(org_id, f"flight-{i}") for i in range(IN_FLIGHT)))
    assert all(status == 202 for status, _ in created), [b for s, b in created if s != 202][:3]
    ids = [body["id"] for _, body in created]

    async def some_done() -> bool:
        return await _active_count(api, ids) >= IN_FLIGHT // 4

    await eventually(some_done, deadline_s=90, what="a quarter of the connections active", every_s=0.2)
    active_at_restart = await _active_count(api, ids)
    broker = await restart_broker(stack.amqp_url, down_s=3.0)
    back = time.monotonic()

    views = await api.wait_settled(ids, deadline_s=SETTLE_DEADLINE_S)
    settled_after = time.monotonic() - back
    apps = [n for n in await api.sim_apps() if n and n.startswith("sfc_")]
    org = await api.sim_org()
    figures = outcome_figures(views, ids)
    figures.update(
        active_when_the_broker_stopped=active_at_restart,
        broker=broker,
        seconds_from_broker_back_to_all_settled=round(settled_after, 1),
        seconds_total=round(time.monotonic() - started, 1),
        apps_in_org=len(apps),
        duplicated_apps=len(duplicates(apps)),
        permission_set_assignments=len(org["assignments"]),
        commands_republished_by_the_sweeper=sum(
            int(e.get("count", 0)) for e in _log_events(api, "manager", "sweeper re-published commands")
        ),
        services_alive={n: stack.procs[n].alive() for n in stack.services()},
    )
    write_figures("broker-restart", figures)

    assert figures["lost"] == 0, figures
    assert set(figures["failed_by_code"]) <= {"salesforce_unavailable", "builder_no_reply"}, figures
    assert not duplicates(apps), figures
    active_apps = {v["app"]["full_name"] for v in views.values() if v["status"] == "active"}
    assert active_apps <= set(apps) and len(active_apps) == figures["completed"]
    assert all(figures["services_alive"].values()), figures
    assert figures["still_pending"] == 0, figures
    assert figures["completed"] + figures["failed"] == IN_FLIGHT


async def test_a_memory_alarm_makes_publishes_time_out_clearly_while_the_api_stays_responsive(
    launch: Launch,
) -> None:
    api = await launch(manager_env={**FAST_SWEEPER, "RPC_DEADLINE_SECONDS": "4"})
    stack = api.stack
    api.api_key = stack.create_api_key("memory-alarm", *ALL_SCOPES)
    org_id = await api.authorize()
    status, first = await api.create(org_id, "before-alarm")
    assert status == 202

    async def active(cid: str = first["id"]) -> bool:
        return (await api.connection(cid))[1]["status"] == "active"

    await eventually(active, deadline_s=60, what="the first connection is active")
    timings: dict[str, Any] = {}
    during: dict[str, Any] = {}
    ids: list[str] = []
    async with memory_alarm(stack.amqp_url) as original:
        await eventually(memory_alarm_raised, deadline_s=30, what="the memory alarm is raised", every_s=0.5)
        alarm_on = time.monotonic()

        async def timed(label: str, coro: Any) -> Any:
            t = time.monotonic()
            result = await coro
            timings[label] = round(time.monotonic() - t, 2)
            return result

        for i in range(3):
            status, body = await timed(
                f"POST /v1/connections #{i + 1}", api.create(org_id, f"during-alarm-{i}")
            )
            during[f"POST /v1/connections #{i + 1}"] = status
            if status == 202:
                ids.append(body["id"])
        status, body = await timed("GET token force_refresh", api.token(first["id"], force_refresh=True))
        during["GET token force_refresh"] = f"{status} {body.get('code', '')}".strip()
        status, body = await timed("GET token", api.token(first["id"]))
        during["GET token"] = status
        status, _ = await timed("GET /v1/connections/{id}", api.connection(first["id"]))
        during["GET /v1/connections/{id}"] = status
        async with api.http.get(f"{api.manager()}/healthz") as r:
            during["GET /healthz"] = r.status
        async with api.http.get(f"{api.manager()}/readyz") as r:
            during["GET /readyz"] = r.status
        alarm_seconds = time.monotonic() - alarm_on
    cleared = time.monotonic()
    restored = await memory_watermark()
    views = await api.wait_settled(ids, deadline_s=90)
    recovered = time.monotonic() - cleared
    publish_errors = _log_events(api, "manager", "command not published; the sweeper will retry")
    apps = [n for n in await api.sim_apps() if n and n.startswith("sfc_")]
    figures = outcome_figures(views, ids)
    figures.update(
        watermark_restored_to=restored,
        original_watermark=original,
        alarm_seconds=round(alarm_seconds, 1),
        answers_during_alarm=during,
        seconds_per_call_during_alarm=timings,
        publish_errors_logged=sorted({e.get("error", "").split(":")[0] for e in publish_errors}),
        seconds_from_alarm_cleared_to_all_settled=round(recovered, 1),
        apps_in_org=len(apps),
        duplicated_apps=len(duplicates(apps)),
    )
    write_figures("memory-alarm", figures)

    assert restored == original
    assert (
        during["GET /healthz"] == 200
        and during["GET /v1/connections/{id}"] == 200
        and during["GET token"] == 200
    )
    assert timings["GET token"] < 1.5 and timings["GET /v1/connections/{id}"] < 1.5, timings
    for i in range(3):
        assert during[f"POST /v1/connections #{i + 1}"] in (202, 503)
        assert timings[f"POST /v1/connections #{i + 1}"] < 10, timings
    assert during["GET token force_refresh"].startswith("503"), during
    assert publish_errors and all("PublishTimeout" in e.get("error", "") for e in publish_errors[:1]), (
        publish_errors
    )
    assert figures["completed"] == len(ids), figures
    assert not duplicates(apps)
    assert all(stack.procs[n].alive() for n in stack.services())
