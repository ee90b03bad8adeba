"""The Manager's MongoDB-wire server stops and comes back (same storage, same port) while connections are
being created: the Manager answers 503 problem documents meanwhile, never crashes, recovers by itself, and
the Builder's replies that arrived during the outage wait in the broker and are applied afterwards.

The Builder keeps its own database server here (``secantusdb-builder``, a process of the stack, so the secret
scan at the end covers it too), so it goes on working and replying during the outage.
A long outage (longer than the replies consumer's retries) is opt-in: SFCONNECT_FAULT_SLOW=1.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from tests.fault.conftest import Launch
from tests.fault.harness import ALL_SCOPES, Api, duplicates, eventually, outcome_figures, write_figures
from tests.fault.secrets_scan import databases, harvest_builder_secrets

pytestmark = pytest.mark.fault

SLOW = os.environ.get("SFCONNECT_FAULT_SLOW", "") == "1"
CREATED = "connection.created.v1"
MANAGER_ENV = {"MONGODB_TIMEOUT_SECONDS": "2"}


async def _probe(api: Api, cid: str, seen: Counter[str], slowest: list[float]) -> None:
    """One round of calls a client makes; tallies what came back and the slowest answer."""
    base = api.manager()
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/v1/connections", None),
        ("GET", f"/v1/connections/{cid}", None),
        ("GET", f"/v1/connections/{cid}/token", None),
        ("POST", "/v1/connections", {"name": "during-outage", "admin_email": "it@acme.example",
                                     "salesforce_username": "someone@acme.example", "org_id": "00D000000000001AAA"}),
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
    ]  # fmt: skip

    async def call(method: str, path: str, body: dict[str, Any] | None) -> None:
        started = time.monotonic()
        try:
            async with api.http.request(
                method, base + path, json=body, headers=api.auth, timeout=aiohttp.ClientTimeout(total=15)
            ) as r:
                payload = await r.json(content_type=None)
                status = r.status
                ctype = r.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            seen[f"{method} {path.split('/')[-1] or path}: {type(exc).__name__}"] += 1
            return
        slowest[0] = max(slowest[0], time.monotonic() - started)
        label = "healthz" if path == "/healthz" else "readyz" if path == "/readyz" else "api"
        if status == 503 and label == "api":
            assert ctype == "application/problem+json", payload
            assert payload.get("code") == "database_unavailable", payload
        assert status < 500 or status == 503, (method, path, status, payload)
        seen[f"{label} {status}"] += 1

    await asyncio.gather(*(call(*c) for c in calls))


async def _outage(api: Api, *, seconds: float, cid: str) -> tuple[Counter[str], float, float]:
    """Stop the Manager's database for ``seconds`` while probing the API; returns tallies, slowest, recovery."""
    stack = api.stack
    await asyncio.to_thread(stack.procs["secantusdb"].stop)
    seen: Counter[str] = Counter()
    slowest = [0.0]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await _probe(api, cid, seen, slowest)
        assert stack.procs["manager"].alive(), "the Manager died during the database outage"
    await asyncio.to_thread(stack.restart_database)
    back = time.monotonic()

    async def ready() -> bool:
        async with api.http.get(f"{api.manager()}/readyz") as r:
            return r.status == 200

    await eventually(ready, deadline_s=60, what="the Manager is ready again", every_s=0.1)
    return seen, slowest[0], time.monotonic() - back


def _log_count(stack: Any, proc: str, event: str) -> int:
    path = stack.logs_dir / f"{proc}.log"
    return sum(1 for line in path.read_text(errors="replace").splitlines() if f'"event": "{event}"' in line)


async def _scenario(launch: Launch, *, outage_s: float, manager_env: dict[str, str]) -> dict[str, Any]:
    api = await launch(builder_database=True, manager_env=manager_env)
    stack = api.stack
    builder_url = stack.procs["builder"].env["MONGODB_URL"]
    assert builder_url != stack.mongodb_url
    assert (builder_url, "sfconnect_builder") in databases(stack), "the secret scan would miss the Builder's"
    api.api_key = stack.create_api_key("db-outage", *ALL_SCOPES)
    org_id = await api.authorize()
    status, before = await api.create(org_id, "before-outage")
    assert status == 202

    async def active() -> bool:
        return (await api.connection(before["id"]))[1]["status"] == "active"

    await eventually(active, deadline_s=60, what="the first connection is active")
    token_before = (await api.token(before["id"]))[1]["access_token"]
    await harvest_builder_secrets(stack)  # from the Builder's own server: its key and org tokens
    harvested = {kind for kind, _ in stack.harvested}
    assert {"connection_private_key", "builder_org_refresh_token"} <= harvested, harvested

    await api.patch_org(deploy_seconds=2.0)  # the Builder answers these during the outage
    ids = []
    for i in range(5):
        status, body = await api.create(org_id, f"in-flight-{i}")
        assert status == 202, body
        ids.append(body["id"])
    seen, slowest, recovery = await _outage(api, seconds=outage_s, cid=before["id"])
    settle_started = time.monotonic()
    views = await api.wait_settled(ids, deadline_s=240 if SLOW else 90)
    settled_after = time.monotonic() - settle_started

    apps = [n for n in await api.sim_apps() if n and n.startswith("sfc_")]
    figures = outcome_figures(views, ids)
    figures.update(
        outage_seconds=outage_s,
        manager_mongodb_timeout_seconds=manager_env.get("MONGODB_TIMEOUT_SECONDS", "5"),
        responses_during_outage=dict(sorted(seen.items())),
        slowest_answer_during_outage_s=round(slowest, 2),
        seconds_from_restart_to_ready=round(recovery, 2),
        seconds_from_ready_to_all_settled=round(settled_after, 1),
        replies_applied=int(
            await api.metric("manager", "sfconnect_manager_replies_total", type=CREATED, outcome="applied")
        ),
        apps_in_org=len(apps),
        duplicated_apps=len(duplicates(apps)),
        replies_retried_while_the_database_was_down=_log_count(stack, "manager", "retry scheduled"),
        replies_dead_lettered_after_their_retries=_log_count(stack, "manager", "retries exhausted"),
        commands_republished_by_the_sweeper=_log_count(stack, "manager", "sweeper re-publishing command"),
    )
    write_figures("database-outage" + (".long" if outage_s > 30 else ""), figures)

    assert seen["api 503"] > 0 and seen["healthz 200"] > 0 and seen["readyz 503"] > 0, seen
    assert not [k for k in seen if "Error" in k], f"calls that got no answer: {seen}"
    assert figures["completed"] == len(ids), figures
    assert figures["replies_retried_while_the_database_was_down"] > 0, "no reply arrived during the outage"
    assert figures["replies_applied"] == len(ids) + 1
    assert len(apps) == len(ids) + 1 and not duplicates(apps)
    assert (await api.token(before["id"]))[1]["access_token"] == token_before
    async with api.http.get(f"{api.manager()}/v1/connections", headers=api.auth) as r:
        names = {c["name"] for c in (await r.json())["items"]}
    assert "during-outage" not in names, "a create answered 503 was recorded anyway"
    assert stack.procs["manager"].alive()
    return figures


async def test_the_manager_answers_503_during_a_database_outage_and_applies_the_waiting_replies_after(
    launch: Launch,
) -> None:
    await _scenario(launch, outage_s=10, manager_env=MANAGER_ENV)


@pytest.mark.skipif(
    not SLOW, reason="a 150 s outage outlasts the replies' retries (~3 min): SFCONNECT_FAULT_SLOW=1"
)
async def test_replies_that_outlast_their_retries_in_a_long_outage_are_recovered_by_the_sweeper(
    launch: Launch,
) -> None:
    env = {**MANAGER_ENV, "SWEEPER_INTERVAL_SECONDS": "5", "PENDING_REPUBLISH_SECONDS": "20"}
    figures = await _scenario(launch, outage_s=150, manager_env=env)
    assert figures["replies_dead_lettered_after_their_retries"] > 0, "the outage was not long enough"
    assert figures["commands_republished_by_the_sweeper"] > 0
