"""``make run``: the embedded default stack, left running until Ctrl-C, with its URLs and a ready API key."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import uuid

import aiohttp

from devtools.demo import ensure_rabbitmq, say, start_stack
from devtools.stack import DEMO_USERNAME, Stack, StackError


async def _authorize(stack: Stack) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{stack.url('builder')}/v1/salesforce/authorize",
            headers={"Authorization": f"Bearer {stack.admin_api_key}"},
        ) as resp:
            if resp.status != 200:
                raise StackError(f"authorizing the Builder in the simulator failed: {resp.status}")
        async with http.get(
            f"{stack.url('builder')}/v1/orgs", headers={"Authorization": f"Bearer {stack.admin_api_key}"}
        ) as resp:
            return str((await resp.json())["orgs"][0]["org_id"])


def main() -> int:
    say(f"  {ensure_rabbitmq()}")
    stack = Stack(amqp_prefix=f"run{uuid.uuid4().hex[:6]}.")
    try:
        start_stack(stack)
        api_key = stack.create_api_key("make-run")
        org_id = asyncio.run(_authorize(stack))
    except StackError as exc:
        say(f"[FAILED] {exc}")
        stack.stop()
        return 1
    manager = stack.url("manager")
    say("== the stack is running (Ctrl-C stops it)")
    say(f"  Manager API      {manager}/v1/openapi.json")
    say(f"  Builder API      {stack.url('builder')}/v1/openapi.json (admin key: {stack.admin_api_key})")
    say(f"  simulator        {stack.sim_url}/__sim/state")
    say(f"  Manager API key  {api_key}")
    say(f"  logs             {stack.workdir / 'logs'}")
    say("== try it")
    say(
        f"  curl -s -X POST {manager}/v1/connections -H 'Authorization: Bearer {api_key}' "
        f'-H \'Content-Type: application/json\' -d \'{{"name": "erp", "admin_email": "it@acme.example", '
        f'"salesforce_username": "{DEMO_USERNAME.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}", '
        f'"org_id": "{org_id}"}}\''
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            dead = [p.name for p in stack.procs.values() if not p.alive()]
            if dead:
                say(f"[FAILED] stopped unexpectedly: {', '.join(dead)} (see the logs)")
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        say("== shutting down")
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
