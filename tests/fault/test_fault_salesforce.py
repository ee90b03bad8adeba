"""Salesforce misbehaves (the simulator injects 5xx, latency, timeouts and REQUEST_LIMIT_EXCEEDED): the
Builder retries a bounded number of times through the delayed-retry queues, then the connection fails with
a typed error; transient trouble ends in ``active`` with exactly one app per connection."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.fault.conftest import Launch
from tests.fault.harness import ALL_SCOPES, Api, duplicates, eventually, outcome_figures, write_figures

pytestmark = pytest.mark.fault

SLOW = os.environ.get("SFCONNECT_FAULT_SLOW", "") == "1"  # opt-in scenarios that take minutes
CREATE = "connection.create.v1"


async def _create_all(api: Api, org_id: str, names: list[str]) -> list[str]:
    async def one(name: str) -> str:
        status, body = await api.create(org_id, name)
        assert status == 202, body
        return str(body["id"])

    return list(await asyncio.gather(*(one(n) for n in names)))


async def _deliveries(api: Api, outcome: str | None = None, builder: str = "builder") -> int:
    """Create commands the Builder handled (each delivery counts once), optionally of one outcome."""
    labels = {"type": CREATE, **({"outcome": outcome} if outcome else {})}
    return int(await api.metric(builder, "builder_commands_total", **labels))


async def _settle_one(api: Api, org_id: str, name: str, deadline_s: float) -> tuple[dict[str, object], float]:
    started = time.monotonic()
    [cid] = await _create_all(api, org_id, [name])
    views = await api.wait_settled([cid], deadline_s=deadline_s)
    return views.get(cid, {}), time.monotonic() - started


async def test_transient_5xx_and_latency_end_active_with_one_app_per_connection(launch: Launch) -> None:
    api = await launch()
    api.api_key = api.stack.create_api_key("sf-transient", *ALL_SCOPES)
    org_id = await api.authorize()
    await api.patch_org(latency_ms=300, fail_next_5xx=4)
    names = [f"transient-{i}" for i in range(6)]
    started = time.monotonic()
    ids = await _create_all(api, org_id, names)
    views = await api.wait_settled(ids, deadline_s=120)
    elapsed = time.monotonic() - started
    figures = outcome_figures(views, ids)
    apps = [n for n in await api.sim_apps() if n and n.startswith("sfc_")]
    org = await api.sim_org()
    figures.update(
        injected="latency 300 ms on every call + the next 4 calls answered 503",
        retried_deliveries=await _deliveries(api, "retry"),
        apps_in_org=len(apps),
        duplicated_apps=len(duplicates(apps)),
        permission_set_assignments=len(org["assignments"]),
        seconds_until_all_settled=round(elapsed, 1),
    )
    write_figures("salesforce-transient", figures)
    assert figures["completed"] == len(ids), views
    assert org["knobs"]["fail_next_5xx"] == 0, "the injected failures were not all consumed"
    assert figures["retried_deliveries"] >= 1, "no retry happened: the fault was not exercised"
    assert len(apps) == len(ids) and not duplicates(apps)
    per_connection = {v["app"]["full_name"] for v in views.values()}
    assert per_connection == set(apps)


async def test_persistent_5xx_timeouts_and_the_api_limit_end_in_typed_failures_after_bounded_attempts(
    launch: Launch,
) -> None:
    attempts = 2
    api = await launch(
        builder_env={"COMMAND_MAX_ATTEMPTS": str(attempts), "SALESFORCE_TIMEOUT_SECONDS": "1.5"}
    )
    stack = api.stack
    api.api_key = stack.create_api_key("sf-persistent", *ALL_SCOPES)
    org_id = await api.authorize()
    results: dict[str, dict[str, object]] = {}

    await api.patch_org(error_rate_5xx=1.0)
    before = await _deliveries(api)
    view, took = await _settle_one(api, org_id, "always-503", deadline_s=60)
    deliveries = await _deliveries(api) - before
    results["every call answered 503"] = {
        "status": view.get("status"),
        "code": (view.get("error") or {}).get("code"),  # type: ignore[attr-defined]
        "deliveries": deliveries,
        "seconds_to_failure": round(took, 1),
    }
    assert (
        view.get("status") == "failed"
        and results["every call answered 503"]["code"] == "salesforce_unavailable"
    )
    assert deliveries == attempts

    await api.patch_org(error_rate_5xx=0.0, latency_ms=2500)
    before = await _deliveries(api)
    view, took = await _settle_one(api, org_id, "too-slow", deadline_s=60)
    deliveries = await _deliveries(api) - before
    results["every call slower than SALESFORCE_TIMEOUT_SECONDS=1.5"] = {
        "status": view.get("status"),
        "code": (view.get("error") or {}).get("code"),  # type: ignore[attr-defined]
        "deliveries": deliveries,
        "seconds_to_failure": round(took, 1),
    }
    assert view.get("status") == "failed"
    assert (view.get("error") or {}).get("code") == "salesforce_unavailable"  # type: ignore[attr-defined]
    assert deliveries == attempts
    await api.patch_org(latency_ms=0)

    # The API limit: its retry waits a long delay tier (60 s asked, 120 s tier), so the CI run gives this
    # Builder a single attempt; SFCONNECT_FAULT_SLOW=1 runs the retry (test below).
    await asyncio.to_thread(stack.procs["builder"].stop)
    stack.add_builder("builder-limit", COMMAND_MAX_ATTEMPTS="1")
    org = await api.sim_org()
    await api.patch_org(api_limit=org["knobs"]["api_requests_used"])
    view, took = await _settle_one(api, org_id, "over-the-limit", deadline_s=60)
    results["REQUEST_LIMIT_EXCEEDED on every API call (1 attempt)"] = {
        "status": view.get("status"),
        "code": (view.get("error") or {}).get("code"),  # type: ignore[attr-defined]
        "deliveries": await _deliveries(api, builder="builder-limit"),
        "seconds_to_failure": round(took, 1),
    }
    assert view.get("status") == "failed"
    assert (view.get("error") or {}).get("code") == "request_limit_exceeded"  # type: ignore[attr-defined]
    apps = [n for n in await api.sim_apps() if n and n.startswith("sfc_")]
    assert apps == [], f"failed connections left apps behind: {apps}"
    assert all(stack.procs[n].alive() for n in ("builder-limit", "manager"))
    write_figures(
        "salesforce-persistent", {"max_attempts": attempts, "cases": results, "apps_left": len(apps)}
    )


@pytest.mark.skipif(not SLOW, reason="takes ~2.5 min (120 s retry tier): SFCONNECT_FAULT_SLOW=1")
async def test_a_request_limit_that_clears_is_retried_after_the_delay_and_the_connection_becomes_active(
    launch: Launch,
) -> None:
    api = await launch()
    api.api_key = api.stack.create_api_key("sf-limit", *ALL_SCOPES)
    org_id = await api.authorize()
    org = await api.sim_org()
    await api.patch_org(api_limit=org["knobs"]["api_requests_used"])
    started = time.monotonic()
    [cid] = await _create_all(api, org_id, ["limit-clears"])

    async def retry_scheduled() -> bool:
        return await _deliveries(api, "retry") >= 1

    await eventually(retry_scheduled, deadline_s=30, what="the limit made the Builder schedule a retry")
    await api.patch_org(api_limit=100_000)
    views = await api.wait_settled([cid], deadline_s=240)
    write_figures(
        "salesforce-limit-clears",
        {
            "status": views[cid]["status"],
            "seconds_to_active": round(time.monotonic() - started, 1),
            "deliveries": await _deliveries(api),
        },
    )
    assert views[cid]["status"] == "active"
