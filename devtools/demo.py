"""``make demo``: the whole job on the embedded default, through the public interfaces only.

Starts RabbitMQ if needed (reuses the one on 127.0.0.1:5672), SecantusDB, the Salesforce simulator, a
Builder and a Manager as local processes, then: authorizes the Builder in the simulated org by following
the OAuth redirects, lists the org's objects, creates a connection, waits until it is active, gets its
token through the client library, calls Salesforce REST with it, expires the session and shows the
client refreshing transparently, deletes the connection and shows the app gone. Exit 0 on success; a
failure names the step and the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from devtools.stack import DEMO_USERNAME, Stack, StackError, port_open
from shared.client import SalesforceClient

STEP_WIDTH = 64


class DemoFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


def say(text: str) -> None:
    print(text, flush=True)


def ensure_rabbitmq(deadline_s: float = 60.0) -> str:
    """Reuse the broker on 127.0.0.1:5672, or start the installed one."""
    if port_open("127.0.0.1", 5672):
        return "reused the broker on 127.0.0.1:5672"
    if not shutil.which("rabbitmq-server"):
        raise DemoFailed(
            "broker",
            "nothing listens on 127.0.0.1:5672 and rabbitmq-server is not installed "
            "(apt-get install rabbitmq-server)",
        )
    subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if port_open("127.0.0.1", 5672):
            return "started rabbitmq-server on 127.0.0.1:5672"
        time.sleep(0.5)
    raise DemoFailed("broker", f"rabbitmq-server did not open 127.0.0.1:5672 within {deadline_s:.0f}s")


async def poll(
    what: str, check: Callable[[], Awaitable[Any]], deadline_s: float, every_s: float = 0.2
) -> Any:
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise DemoFailed(what, f"not reached within {deadline_s:.0f}s")


async def scenario(stack: Stack, http: aiohttp.ClientSession, api_key: str) -> list[tuple[str, str]]:
    summary: list[tuple[str, str]] = []
    builder, manager, sim = stack.url("builder"), stack.url("manager"), stack.sim_url
    admin = {"Authorization": f"Bearer {stack.admin_api_key}"}
    auth = {"Authorization": f"Bearer {api_key}"}

    step = "authorize the Builder"
    async with http.get(f"{builder}/v1/salesforce/authorize", headers=admin) as resp:
        page = await resp.text()
        hops = [str(h.url).split("?")[0] for h in resp.history]
        if resp.status != 200:
            raise DemoFailed(step, f"the OAuth flow ended with {resp.status}: {page[:200]}")
    async with http.get(f"{builder}/v1/orgs", headers=admin) as resp:
        orgs = (await resp.json())["orgs"]
    if not orgs:
        raise DemoFailed(step, "the callback succeeded but no org authorization was stored")
    org_id = orgs[0]["org_id"]
    say(f"  followed {len(hops)} redirects ({' -> '.join(hops)})")
    summary.append((step, f"org {org_id} at {orgs[0]['instance_url']}"))
    say(f"[ok] {step}: org {org_id}")

    step = "list the org's objects"
    async with http.get(f"{builder}/v1/orgs/{org_id}/objects", headers=admin) as resp:
        if resp.status != 200:
            raise DemoFailed(step, f"{resp.status}: {await resp.text()}")
        objects = await resp.json()
    names = [o["name"] for o in objects.get("sobjects", objects.get("objects", []))]
    summary.append((step, f"{len(names)} objects, e.g. {', '.join(names[:5])}"))
    say(f"[ok] {step}: {len(names)} objects ({', '.join(names[:5])}, ...)")

    step = "create a connection"
    name = f"acme-erp-{uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "admin_email": "it-admin@acme.example",
        "salesforce_username": DEMO_USERNAME,
        "org_id": org_id,
        "label": "Acme ERP sync",
    }
    async with http.post(
        f"{manager}/v1/connections", json=body, headers={**auth, "Idempotency-Key": uuid.uuid4().hex}
    ) as resp:
        created = await resp.json()
        if resp.status != 202:
            raise DemoFailed(step, f"{resp.status}: {created}")
    cid = created["id"]
    say(f"[ok] {step}: {cid} is {created['status']} (user {DEMO_USERNAME})")

    step = "wait until the connection is active"
    started = time.monotonic()

    async def active() -> dict[str, Any] | None:
        async with http.get(f"{manager}/v1/connections/{cid}", headers=auth) as r:
            conn: dict[str, Any] = await r.json()
        if conn["status"] == "failed":
            raise DemoFailed(step, f"the Builder reported {conn['error']}")
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

    step = "associate an integration"
    async with http.put(
        f"{manager}/v1/integrations/erp-sync/connection", json={"connection_id": cid}, headers=auth
    ) as resp:
        if resp.status not in (200, 201):
            raise DemoFailed(step, f"{resp.status}: {await resp.text()}")
    say(f"[ok] {step}: erp-sync -> {cid}")

    step = "call Salesforce through the client library"
    async with SalesforceClient(manager, api_key, integration="erp-sync", session=http) as sf:
        described = await sf.describe_global()
        users = await sf.query("SELECT Id, Username FROM User WHERE IsActive = true")
        say(
            f"[ok] {step}: describeGlobal -> {len(described['sobjects'])} objects; "
            f"query -> {users['totalSize']} active users (the token never left the client)"
        )
        summary.append((step, f"{len(described['sobjects'])} objects, {users['totalSize']} users"))

        step = "expire the session and refresh transparently"
        async with http.post(f"{sim}/__sim/orgs/{stack.org_key}/expire-sessions") as resp:
            if resp.status >= 400:
                raise DemoFailed(step, f"simulator refused: {resp.status}")
        again = await sf.describe_global()
        if sf.refreshes != 1:
            raise DemoFailed(step, f"expected one transparent refresh, saw {sf.refreshes}")
        say(
            f"[ok] {step}: 401 INVALID_SESSION_ID -> force_refresh -> retried "
            f"({len(again['sobjects'])} objects)"
        )
        summary.append((step, "1 refresh, call succeeded"))

    step = "delete the connection"
    async with http.delete(f"{manager}/v1/connections/{cid}", headers=auth) as resp:
        if resp.status != 202:
            raise DemoFailed(step, f"{resp.status}: {await resp.text()}")

    async def deleted() -> bool:
        async with http.get(f"{manager}/v1/connections/{cid}", headers=auth) as r:
            return bool((await r.json())["status"] == "deleted")

    await poll(step, deleted, deadline_s=60)
    async with http.get(f"{sim}/__sim/orgs/{stack.org_key}/apps") as resp:
        apps = await resp.json()
    app_names = [
        a.get("full_name") or a.get("fullName")
        for a in (apps.get("apps", apps) if isinstance(apps, dict) else apps)
    ]
    if app["full_name"] in app_names:
        raise DemoFailed(step, f"{app['full_name']} is still in the org")
    say(f"[ok] {step}: connection deleted; {app['full_name']} is gone from the org")
    summary.append((step, f"app {app['full_name']} removed"))
    return summary


async def run_demo(stack: Stack) -> list[tuple[str, str]]:
    api_key = stack.create_api_key("demo")
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        return await scenario(stack, http, api_key)


def start_stack(stack: Stack) -> None:
    from devtools.stack import free_port

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo")
    parser.add_argument("--keep", action="store_true", help="leave the work directory (logs) in place")
    args = parser.parse_args(argv)
    started = time.monotonic()
    say("== sfconnect demo")
    try:
        say(f"  {ensure_rabbitmq()}")
    except DemoFailed as exc:
        say(f"[FAILED] step '{exc.step}': {exc.reason}")
        return 1
    stack = Stack(amqp_prefix=f"demo{uuid.uuid4().hex[:6]}.", die_with_parent=True)
    code = 1
    try:
        start_stack(stack)
        say("== running the scenario")
        summary = asyncio.run(run_demo(stack))
        say("== summary")
        for step, result in summary:
            say(f"  {step:<48} {result}")
        code = 0
    except DemoFailed as exc:
        say(f"[FAILED] step '{exc.step}': {exc.reason}")
    except StackError as exc:
        say(f"[FAILED] step 'start the stack': {exc}")
    except Exception as exc:  # the demo names whatever went wrong and still shuts down
        say(f"[FAILED] unexpected {type(exc).__name__}: {exc}")
    finally:
        say("== shutting down")
        codes = stack.stop()
        say("  " + ", ".join(f"{n} exited {c}" for n, c in codes.items()))
        stack.drop_topology()
        if args.keep or code:
            say(f"  logs kept in {stack.workdir / 'logs'}")
        else:
            shutil.rmtree(stack.workdir, ignore_errors=True)
    say(f"== demo {'passed' if code == 0 else 'FAILED'} in {time.monotonic() - started:.1f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
