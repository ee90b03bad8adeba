"""No credential the system handles is ever found in clear in a database, a queued message or a log."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from devtools.demo import run_demo
from tests.fault.conftest import Launch
from tests.fault.harness import ALL_SCOPES, eventually, write_figures
from tests.fault.secrets_scan import keep_harvesting, scan

pytestmark = pytest.mark.fault


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
    assert report.documents > 0 and report.log_bytes > 0
    # ...and it finds a secret that does leak.
    planted = stack.logs_dir / "planted.log"
    planted.write_text(f"oops {next(iter(api.served_tokens))}\n")
    leaked = await scan(stack, api.served_tokens)
    planted.unlink()
    assert {where for _, where in leaked.hits} == {"log planted.log"}
