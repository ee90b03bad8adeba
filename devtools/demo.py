"""``make demo``: the whole job on the embedded default, through the public interfaces only.

Starts RabbitMQ if needed (reuses the one on 127.0.0.1:5672, or starts the installed one and stops it
again at the end), SecantusDB, the Salesforce simulator, a Builder and a Manager as local processes,
then: authorizes the Builder in the simulated org by following the OAuth redirects, lists the org's
objects, creates a connection, waits until it is active, gets its token through the client library, calls
Salesforce REST with it, expires the session and shows the client refreshing transparently, deletes the
connection and shows the app gone. Exit 0 on success; a failure names the step and the reason (an HTTP
answer's status and problem document, never a secret); a process that does not exit cleanly at shutdown
fails the demo too.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
import uuid
from typing import Any, Protocol

import aiohttp

from devtools.demo_support import (
    DemoFailed,
    Progress,
    answer,
    describe_answer,
    ensure_rabbitmq,
    poll,
    say,
    stop_rabbitmq,
    unclean_exits,
)
from devtools.stack import DEMO_USERNAME, Stack, free_port
from shared.client import SalesforceClient

__all__ = ["DemoFailed", "ensure_rabbitmq", "main", "run_demo", "say", "scenario", "start_stack"]


class DemoStack(Protocol):
    """What the scenario uses of a stack (:class:`devtools.stack.Stack` has it all)."""

    admin_api_key: str
    org_key: str

    @property
    def sim_url(self) -> str: ...

    def url(self, name: str) -> str: ...

    def create_api_key(self, name: str, *scopes: str, manager: str = "manager") -> str: ...


async def scenario(
    stack: DemoStack, http: aiohttp.ClientSession, api_key: str, progress: Progress
) -> list[tuple[str, str]]:
    summary: list[tuple[str, str]] = []
    builder, manager, sim = stack.url("builder"), stack.url("manager"), stack.sim_url
    admin = {"Authorization": f"Bearer {stack.admin_api_key}"}
    auth = {"Authorization": f"Bearer {api_key}"}

    step = progress.begin("authorize the Builder")
    async with http.get(f"{builder}/v1/salesforce/authorize", headers=admin) as resp:
        hops = [str(h.url).split("?")[0] for h in resp.history]
        if resp.status != 200:
            raise progress.fail(
                f"the OAuth flow ended with {describe_answer(resp.status, await resp.text())}"
            )
    async with http.get(f"{builder}/v1/orgs", headers=admin) as resp:
        orgs = (await answer(resp, step, 200))["orgs"]
    if not orgs:
        raise progress.fail("the callback succeeded but no org authorization was stored")
    org_id = orgs[0]["org_id"]
    say(f"  followed {len(hops)} redirects ({' -> '.join(hops)})")
    summary.append((step, f"org {org_id} at {orgs[0]['instance_url']}"))
    say(f"[ok] {step}: org {org_id}")

    step = progress.begin("list the org's objects")
    async with http.get(f"{builder}/v1/orgs/{org_id}/objects", headers=admin) as resp:
        objects = await answer(resp, step, 200)
    names = [o["name"] for o in objects.get("sobjects", objects.get("objects", []))]
    summary.append((step, f"{len(names)} objects, e.g. {', '.join(names[:5])}"))
    say(f"[ok] {step}: {len(names)} objects ({', '.join(names[:5])}, ...)")

    step = progress.begin("create a connection")
    body = {
        "name": f"acme-erp-{uuid.uuid4().hex[:6]}",
        "admin_email": "it-admin@acme.example",
        "salesforce_username": DEMO_USERNAME,
        "org_id": org_id,
        "label": "Acme ERP sync",
    }
    async with http.post(
        f"{manager}/v1/connections", json=body, headers={**auth, "Idempotency-Key": uuid.uuid4().hex}
    ) as resp:
        created = await answer(resp, step, 202)
    cid = created["id"]
    say(f"[ok] {step}: {cid} is {created['status']} (user {DEMO_USERNAME})")

    step = progress.begin("wait until the connection is active")
    started = time.monotonic()

    async def active() -> dict[str, Any] | None:
        async with http.get(f"{manager}/v1/connections/{cid}", headers=auth) as r:
            conn: dict[str, Any] = await answer(r, step, 200)
        if conn["status"] == "failed":
            error = conn.get("error") or {}
            raise progress.fail(f"the Builder reported {error.get('code')}: {error.get('message')}")
        return conn if conn["status"] == "active" else None

    conn = await poll(step, active, deadline_s=120)
    app = conn["app"]
    summary.append(
        ("create a connection", f"{app['kind']} {app['full_name']} in {time.monotonic() - started:.1f}s")
    )
    say(
        f"[ok] {step}: {app['kind']} {app['full_name']} (consumer key {app['consumer_key'][:8]}...) "
        f"after {time.monotonic() - started:.1f}s"
    )

    step = progress.begin("associate an integration")
    async with http.put(
        f"{manager}/v1/integrations/erp-sync/connection", json={"connection_id": cid}, headers=auth
    ) as resp:
        await answer(resp, step, 200, 201)
    say(f"[ok] {step}: erp-sync -> {cid}")

    step = progress.begin("call Salesforce through the client library")
    async with SalesforceClient(manager, api_key, integration="erp-sync", session=http) as sf:
        described = await sf.describe_global()
        users = await sf.query("SELECT Id, Username FROM User WHERE IsActive = true")
        say(
            f"[ok] {step}: describeGlobal -> {len(described['sobjects'])} objects; "
            f"query -> {users['totalSize']} active users (the token never left the client)"
        )
        summary.append((step, f"{len(described['sobjects'])} objects, {users['totalSize']} users"))

        step = progress.begin("expire the session and refresh transparently")
        async with http.post(f"{sim}/__sim/orgs/{stack.org_key}/expire-sessions") as resp:
            if resp.status >= 300:
                raise progress.fail(
                    f"the simulator refused: {describe_answer(resp.status, await resp.text())}"
                )
        again = await sf.describe_global()
        if sf.refreshes != 1:
            raise progress.fail(f"expected one transparent refresh, saw {sf.refreshes}")
        say(
            f"[ok] {step}: 401 INVALID_SESSION_ID -> force_refresh -> retried "
            f"({len(again['sobjects'])} objects)"
        )
        summary.append((step, "1 refresh, call succeeded"))

    step = progress.begin("delete the connection")
    async with http.delete(f"{manager}/v1/connections/{cid}", headers=auth) as resp:
        await answer(resp, step, 202)

    async def deleted() -> bool:
        async with http.get(f"{manager}/v1/connections/{cid}", headers=auth) as r:
            return bool((await answer(r, step, 200))["status"] == "deleted")

    await poll(step, deleted, deadline_s=60)
    async with http.get(f"{sim}/__sim/orgs/{stack.org_key}/apps") as resp:
        apps = await answer(resp, step, 200)
    app_names = [
        a.get("full_name") or a.get("fullName")
        for a in (apps.get("apps", apps) if isinstance(apps, dict) else apps)
    ]
    if app["full_name"] in app_names:
        raise progress.fail(f"{app['full_name']} is still in the org")
    say(f"[ok] {step}: connection deleted; {app['full_name']} is gone from the org")
    summary.append((step, f"app {app['full_name']} removed"))
    return summary


async def run_demo(stack: DemoStack, progress: Progress | None = None) -> list[tuple[str, str]]:
    """The scenario on a running stack; any failure is a :class:`DemoFailed` naming its step."""
    progress = progress or Progress()
    progress.hide(stack.admin_api_key)
    try:
        progress.begin("create an API key")
        api_key = stack.create_api_key("demo")
        progress.hide(api_key)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            return await scenario(stack, http, api_key, progress)
    except DemoFailed:
        raise
    except Exception as exc:
        raise DemoFailed(progress.step, f"unexpected {type(exc).__name__}: {exc}") from exc


def start_stack(stack: Stack) -> None:
    builder_port = free_port()
    say("== starting the embedded default stack")
    stack.start_database()
    say(f"  SecantusDB (MongoDB wire) at {stack.mongodb_url}")
    stack.start_simulator([builder_port])
    say(f"  Salesforce simulator at {stack.sim_url} (org '{stack.org_key}')")
    stack.add_builder(port=builder_port)
    say(f"  Builder at {stack.url('builder')}")
    stack.add_manager()
    say(f"  Manager at {stack.url('manager')}")


def _run(stack: Stack, progress: Progress) -> bool:
    """Start the stack and run the scenario; False (after printing the failure line) when a step failed."""
    try:
        progress.begin("start the stack")
        start_stack(stack)
        say("== running the scenario")
        summary = asyncio.run(run_demo(stack, progress))
    except Exception as exc:  # the demo names whatever went wrong, and its step, and still shuts down
        say(progress.failure_line(exc))
        return False
    say("== summary")
    for step, result in summary:
        say(f"  {step:<48} {result}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo")
    parser.add_argument("--keep", action="store_true", help="leave the work directory (logs) in place")
    args = parser.parse_args(argv)
    started = time.monotonic()
    progress = Progress()
    say("== sfconnect demo")
    try:
        broker = ensure_rabbitmq()
    except DemoFailed as exc:
        say(progress.failure_line(exc))
        return 1
    say(f"  {broker.note}")
    stack = Stack(amqp_prefix=f"demo{uuid.uuid4().hex[:6]}.", die_with_parent=True)
    progress.hide(stack.admin_api_key, stack.builder_client_secret)
    ok = False
    try:
        ok = _run(stack, progress)
    finally:
        say("== shutting down")
        progress.begin("shut down")
        codes = stack.stop()
        say("  " + ", ".join(f"{n} exited {c}" for n, c in codes.items()))
        stack.drop_topology()
        problems = [f"{p} (log: {stack.workdir / 'logs'})" for p in unclean_exits(codes)]
        if (why := stop_rabbitmq(broker)) is not None:
            problems.append(f"could not stop the broker the demo started: {why}")
        elif broker.started:
            say("  stopped the broker the demo started")
        for problem in problems:
            say(progress.failure_line(progress.fail(problem)))
        ok = ok and not problems
        if args.keep or not ok:
            say(f"  logs kept in {stack.workdir / 'logs'}")
        else:
            shutil.rmtree(stack.workdir, ignore_errors=True)
    say(f"== demo {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
