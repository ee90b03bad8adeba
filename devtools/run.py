"""``make run``: the embedded default stack, left running until Ctrl-C (or SIGTERM), with its URLs and a ready API key.

A service that dies is started again (at most ``MAX_RESTARTS`` times each), so you can SIGKILL the
Builder or a Manager mid-command and watch the stack recover. On exit everything is stopped, the run's
queues and exchanges are removed from the broker, and the work folder (logs, keys) is deleted; a broker
that this run started is stopped again (one that was already running is left alone).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import uuid

import aiohttp

from devtools.demo import start_stack
from devtools.demo_support import DemoFailed, ensure_rabbitmq, say, stop_rabbitmq
from devtools.stack import DEMO_USERNAME, Stack, StackError

MAX_RESTARTS = 5
CLI_SETTINGS = (
    "AMQP_URL",
    "AMQP_PREFIX",
    "MONGODB_URL",
    "MONGODB_DATABASE",
    "ENCRYPTION_KEYS",
    "RECIPIENT_PRIVATE_KEYS",
)


async def _authorize(stack: Stack) -> str:
    admin = {"Authorization": f"Bearer {stack.admin_api_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.url('builder')}/v1/salesforce/authorize", headers=admin) as resp:
            if resp.status != 200:
                raise StackError(f"authorizing the Builder in the simulator failed: {resp.status}")
        async with http.get(f"{stack.url('builder')}/v1/orgs", headers=admin) as resp:
            return str((await resp.json())["orgs"][0]["org_id"])


def _write_cli_env(stack: Stack) -> str:
    """The settings the Manager's CLI needs against this stack, in a file only the user can read."""
    path = stack.workdir / "manager-cli.env"
    env = stack.procs["manager"].env
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(f"{name}='{env[name]}'\n" for name in CLI_SETTINGS if name in env)
    return str(path)


def _supervise(stack: Stack, stop: threading.Event) -> int:
    restarts: dict[str, int] = {}
    while not stop.wait(1.0):
        for proc in stack.procs.values():
            if proc.alive():
                continue
            count = restarts.get(proc.name, 0) + 1
            code = proc.popen.returncode if proc.popen else None
            if count > MAX_RESTARTS:
                say(f"[FAILED] {proc.name} keeps stopping (exit {code}); giving up. Log: {proc.log_path}")
                return 1
            restarts[proc.name] = count
            say(f"[!] {proc.name} stopped (exit {code}); starting it again ({count}/{MAX_RESTARTS})")
            proc.popen = None
            proc.start()
            try:
                proc.wait_ready(60)
            except StackError as exc:
                say(f"[!] {exc}")
                continue
            say(f"[ok] {proc.name} is back")
    return 0


def main() -> int:
    try:
        broker = ensure_rabbitmq()
    except DemoFailed as exc:
        say(f"[FAILED] {exc.reason}")
        return 1
    say(f"  {broker.note}")
    stack = Stack(amqp_prefix=f"run{uuid.uuid4().hex[:6]}.", die_with_parent=True)
    code = 0
    try:
        start_stack(stack)
        api_key = stack.create_api_key("make-run")
        org_id = asyncio.run(_authorize(stack))
        manager = stack.url("manager")
        cli_env = _write_cli_env(stack)
        quoted_user = DEMO_USERNAME.replace("'", "'\\''")
        say(
            "== the stack is running (Ctrl-C, or SIGTERM when it runs in the background, stops it and removes its data)"
        )
        say(f"  Manager API      {manager}/v1/openapi.json")
        say(f"  Builder API      {stack.url('builder')}/v1/openapi.json (admin key: {stack.admin_api_key})")
        say(f"  simulator        {stack.sim_url}/__sim/state")
        say(f"  Manager API key  {api_key}")
        say(f"  logs             {stack.workdir / 'logs'}")
        pids = ", ".join(f"{p.name} {p.popen.pid}" for p in stack.procs.values() if p.popen)
        say(f"  processes        {pids} (a process that dies is started again)")
        say(f"  Manager CLI      set -a; . {cli_env}; set +a; .venv/bin/python -m manager api-keys list")
        say("== try it")
        say(
            f"  curl -s -X POST {manager}/v1/connections -H 'Authorization: Bearer {api_key}' "
            f'-H \'Content-Type: application/json\' -d \'{{"name": "erp", "admin_email": "it@acme.example", '
            f'"salesforce_username": "{quoted_user}", "org_id": "{org_id}"}}\''
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            code = _supervise(stack, stop)
        except KeyboardInterrupt:
            pass
    except StackError as exc:
        say(f"[FAILED] {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        say("== shutting down")
        stack.cleanup()
        if (why := stop_rabbitmq(broker)) is not None:
            say(f"[FAILED] could not stop the broker this run started: {why}")
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
