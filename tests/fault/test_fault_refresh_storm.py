"""A refresh storm: 200 concurrent token requests with ``force_refresh`` spread over two Manager processes and
several connections mint exactly one new token per connection (counted at the simulated org)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

import pytest

from tests.fault.conftest import Launch
from tests.fault.harness import ALL_SCOPES, eventually, write_figures

pytestmark = pytest.mark.fault

REQUESTS = 200
CONNECTIONS = 4
REFRESH_MIN_INTERVAL_S = 5.0  # the Manager's default: a force_refresh this soon after a refresh reuses it


async def test_two_hundred_concurrent_forced_refreshes_over_two_managers_mint_one_token_per_connection(
    launch: Launch,
) -> None:
    api = await launch(managers=2)
    stack = api.stack
    api.api_key = stack.create_api_key("storm", *ALL_SCOPES)
    org_id = await api.authorize()
    ids = []
    for i in range(CONNECTIONS):
        status, body = await api.create(org_id, f"storm-{i}", manager=i)
        assert status == 202, body
        ids.append(body["id"])

    async def all_active() -> bool:
        views = await api.statuses(ids)
        return len(views) == len(ids) and all(v["status"] == "active" for v in views.values())

    await eventually(all_active, deadline_s=60, what="every storm connection is active")
    old = {cid: (await api.token(cid))[1]["access_token"] for cid in ids}
    await asyncio.sleep(REFRESH_MIN_INTERVAL_S + 0.5)  # so the storm's force_refresh is not a recent repeat
    mints_before = await api.jwt_mints()

    async def one(i: int) -> tuple[str, int, str]:
        cid = ids[i % CONNECTIONS]
        status, body = await api.token(cid, manager=(i // CONNECTIONS) % 2, force_refresh=True)
        return cid, status, body.get("access_token", body.get("code", ""))

    started = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    elapsed = time.monotonic() - started
    mints = await api.jwt_mints() - mints_before

    statuses = Counter(status for _, status, _ in results)
    tokens: dict[str, set[str]] = defaultdict(set)
    for cid, status, token in results:
        if status == 200:
            tokens[cid].add(token)
    sent = [
        await api.metric(m, "sfconnect_manager_token_refreshes_total", outcome="sent")
        for m in stack.managers()
    ]
    coalesced = [
        await api.metric(m, "sfconnect_manager_token_refreshes_total", outcome="coalesced")
        for m in stack.managers()
    ]
    figures = {
        "requests": REQUESTS,
        "connections": CONNECTIONS,
        "manager_processes": 2,
        "statuses": {str(k): v for k, v in statuses.items()},
        "tokens_minted_at_the_org": mints,
        "refresh_commands_sent_per_manager": [int(x) for x in sent],
        "coalesced_per_manager": [int(x) for x in coalesced],
        "distinct_tokens_served_per_connection": sorted(len(t) for t in tokens.values()),
        "storm_seconds": round(elapsed, 2),
    }
    write_figures("refresh-storm", figures)
    assert statuses == Counter({200: REQUESTS}), figures
    assert mints == CONNECTIONS, figures
    assert int(sum(sent)) == CONNECTIONS, figures
    for cid in ids:
        assert len(tokens[cid]) == 1 and old[cid] not in tokens[cid], f"{cid}: {len(tokens[cid])} tokens"
