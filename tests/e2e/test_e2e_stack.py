"""The services as separate processes against the real broker and a real MongoDB-wire server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from devtools.demo import run_demo
from devtools.stack import DEMO_USERNAME, Stack, free_port

pytestmark = pytest.mark.e2e
DEMO_STEPS = [
    "authorize the Builder",
    "list the org's objects",
    "create a connection",
    "call Salesforce through the client library",
    "expire the session and refresh transparently",
    "delete the connection",
]


def _start(amqp_url: str, builders: int, managers: int) -> Stack:
    stack = Stack(amqp_url=amqp_url, amqp_prefix=f"e2e{uuid.uuid4().hex[:6]}.")
    ports = [free_port() for _ in range(builders)]
    try:
        stack.start_database()
        stack.start_simulator(ports)
        for i, port in enumerate(ports):
            stack.add_builder(f"builder{i + 1}" if builders > 1 else "builder", port=port)
        for i in range(managers):
            stack.add_manager(f"manager{i + 1}" if managers > 1 else "manager")
    except Exception:
        stack.cleanup()
        raise
    return stack


@pytest.fixture
def single_stack(amqp_url: str) -> Iterator[Stack]:
    stack = _start(amqp_url, 1, 1)
    yield stack
    codes = stack.stop()
    stack.cleanup()
    assert all(code == 0 for code in codes.values() if code is not None), f"unclean shutdown: {codes}"


@pytest.fixture
def double_stack(amqp_url: str) -> Iterator[Stack]:
    stack = _start(amqp_url, 2, 2)
    yield stack
    codes = stack.stop()
    stack.cleanup()
    assert all(code == 0 for code in codes.values() if code is not None), f"unclean shutdown: {codes}"


async def test_the_demo_scenario_runs_end_to_end_against_separate_processes(single_stack: Stack) -> None:
    summary = await run_demo(single_stack)
    steps = [step for step, _ in summary]
    assert steps == DEMO_STEPS


async def _json(resp: aiohttp.ClientResponse) -> Any:
    return await resp.json(content_type=None)


async def test_two_managers_and_two_builders_bring_every_connection_to_active_with_one_app_each(
    double_stack: Stack,
) -> None:
    stack = double_stack
    api_key = stack.create_api_key("e2e", "connections:write", "connections:read", manager="manager1")
    auth = {"Authorization": f"Bearer {api_key}"}
    managers = [stack.url("manager1"), stack.url("manager2")]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with http.get(
            f"{stack.url('builder1')}/v1/salesforce/authorize",
            headers={"Authorization": f"Bearer {stack.admin_api_key}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(
            f"{stack.url('builder2')}/v1/orgs", headers={"Authorization": f"Bearer {stack.admin_api_key}"}
        ) as resp:
            org_id = (await _json(resp))["orgs"][0]["org_id"]

        async def create(i: int) -> str:
            body = {
                "name": f"conn-{i}",
                "admin_email": "it@acme.example",
                "salesforce_username": DEMO_USERNAME,
                "org_id": org_id,
            }
            async with http.post(f"{managers[i % 2]}/v1/connections", json=body, headers=auth) as r:
                assert r.status == 202, await r.text()
                return str((await _json(r))["id"])

        ids = await asyncio.gather(*(create(i) for i in range(12)))

        async def statuses() -> dict[str, str]:
            out = {}
            for i, cid in enumerate(ids):
                async with http.get(f"{managers[(i + 1) % 2]}/v1/connections/{cid}", headers=auth) as r:
                    out[cid] = (await _json(r))["status"]
            return out

        for _ in range(600):
            current = await statuses()
            if all(s != "pending" for s in current.values()):
                break
            await asyncio.sleep(0.2)
        assert set(current.values()) == {"active"}, current

        async with http.get(f"{stack.sim_url}/__sim/orgs/{stack.org_key}/apps") as resp:
            apps = await _json(resp)
    app_list = apps.get("apps", apps) if isinstance(apps, dict) else apps
    names = [a.get("full_name") or a.get("fullName") for a in app_list]
    sfc_names = [n for n in names if n and n.startswith("sfc_")]
    assert len(sfc_names) == len(ids) == len(set(sfc_names))
