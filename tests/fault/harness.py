"""The fault-suite harness: the lead's local stack (devtools.stack) plus what fault tests need on top.

- :class:`FaultStack` runs the simulator through :mod:`tests.fault.recording_sim` (so the secret scan
  knows every credential issued) and keeps the API keys it creates;
- :class:`Api` drives the public interfaces (Builder, Manager, simulator admin API) over aiohttp;
- :func:`write_figures` stores a scenario's measured figures under ``tests/fault/results/`` (gitignored)
  and prints them, so docs/RELIABILITY.md can be refreshed from a run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from devtools.stack import DEMO_USERNAME, Proc, Stack, free_port

RESULTS = Path(__file__).resolve().parent / "results"
TERMINAL = ("active", "failed", "deleted")
ALL_SCOPES = ("connections:write", "connections:read", "tokens:read")


def write_figures(scenario: str, figures: dict[str, Any]) -> Path:
    """Write ``figures`` to ``tests/fault/results/<scenario>.json`` and print them (visible with -s)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{scenario}.json"
    record = {"scenario": scenario, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record.update(figures)
    path.write_text(json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")
    print(f"\n[figures] {scenario}: {json.dumps(figures, default=str)}")
    return path


class Deadline(AssertionError):
    """A wait in a fault test ran out of time."""


async def eventually(
    check: Callable[[], Awaitable[Any]], *, deadline_s: float, what: str, every_s: float = 0.25
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise Deadline(f"{what}: not reached within {deadline_s:.0f}s (last: {str(last)[:300]})")


@dataclass
class FaultStack(Stack):
    """The local stack with a recording simulator; remembers every API key it minted."""

    api_keys: list[str] = field(default_factory=list)
    harvested: set[tuple[str, str]] = field(default_factory=set)

    @property
    def record_path(self) -> Path:
        return self.workdir / "sim-record.jsonl"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    def start_simulator(self, builder_ports: list[int]) -> None:
        """As :meth:`Stack.start_simulator`, through the recording wrapper."""
        self.sim_port = self.sim_port or free_port()
        path = self.workdir / "sim-config.json"
        path.write_text(json.dumps(self.sim_config(builder_ports), indent=2))
        argv = [self.python, "-m", "tests.fault.recording_sim", "--record", str(self.record_path)]
        argv += ["--host", "127.0.0.1", "--port", str(self.sim_port), "--config", str(path)]
        self._launch(
            Proc(
                "simulator",
                argv,
                self._env(SIM_CONFIG=str(path)),
                self.logs_dir / "simulator.log",
                ready_url=f"{self.sim_url}/services/data/",
            )
        )

    def manager_cli(self, *args: str, name: str = "manager") -> str:
        """As :meth:`Stack.manager_cli`; an API key it creates is remembered for the secret scan."""
        if name not in self.procs and self.managers():
            name = self.managers()[0]
        out = super().manager_cli(*args, name=name)
        if args[:2] == ("api-keys", "create"):
            self.api_keys.append(out.strip().splitlines()[-1])
        return out

    def add_database(self, name: str) -> str:
        """Another SecantusDB process of this stack (stopped with it, after the secret scan); its URL."""
        exe = Path(self.python).with_name("secantusd-py")
        port = free_port()
        argv = [str(exe), "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
        argv += ["--storage-path", str(self.workdir / f"{name}-data")]
        self._launch(Proc(name, argv, self._env(), self.logs_dir / f"{name}.log", port=port))
        return f"mongodb://127.0.0.1:{port}/"

    def builders(self) -> list[str]:
        return [n for n in self.procs if n.startswith("builder")]

    def managers(self) -> list[str]:
        return [n for n in self.procs if n.startswith("manager")]

    def stop_services(self) -> dict[str, int | None]:
        """Stop Builders and Managers (SIGTERM, drain), leaving the database and the simulator up."""
        return {n: self.procs[n].stop() for n in reversed(list(self.procs)) if n in self.services()}

    def services(self) -> list[str]:
        return self.builders() + self.managers()


def start_fault_stack(
    amqp_url: str,
    *,
    builders: int = 1,
    managers: int = 1,
    builder_env: dict[str, str] | None = None,
    manager_env: dict[str, str] | None = None,
    builder_database: bool = False,
    **stack_args: Any,
) -> FaultStack:
    """Database, recording simulator, N Builders and M Managers as separate processes.

    ``builder_database``: the Builders get a SecantusDB server of their own, ``secantusdb-builder`` (not
    ``builder-...``: that prefix names the Builders).
    """
    stack = FaultStack(amqp_url=amqp_url, amqp_prefix=f"f{uuid.uuid4().hex[:8]}.", **stack_args)
    ports = [free_port() for _ in range(builders)]
    try:
        stack.start_database()
        stack.start_simulator(ports)
        if builder_database:
            builder_env = {**(builder_env or {}), "MONGODB_URL": stack.add_database("secantusdb-builder")}
        for i, port in enumerate(ports):
            name = f"builder{i + 1}" if builders > 1 else "builder"
            stack.add_builder(name, port=port, **(builder_env or {}))
        for i in range(managers):
            stack.add_manager(f"manager{i + 1}" if managers > 1 else "manager", None, **(manager_env or {}))
    except Exception:
        stack.cleanup()
        raise
    return stack


async def rabbitmqctl(*args: str, timeout_s: float = 60.0) -> str:
    """Run ``rabbitmqctl`` (the tests run as root on the broker's machine); raise on failure."""

    def run() -> str:
        out = subprocess.run(
            ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {out.stderr.strip()[-400:]}")
        return out.stdout

    return await asyncio.to_thread(run)


@dataclass
class Api:
    """The public interfaces of one stack, as a client sees them."""

    stack: FaultStack
    http: aiohttp.ClientSession
    api_key: str = ""
    served_tokens: set[str] = field(default_factory=set)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.admin_api_key}"}

    def manager(self, i: int = 0) -> str:
        names = self.stack.managers()
        return self.stack.url(names[i % len(names)])

    def builder(self, i: int = 0) -> str:
        names = self.stack.builders()
        return self.stack.url(names[i % len(names)])

    async def authorize(self) -> str:
        """Authorize the Builder in the simulated org (follow the OAuth redirects); the org id."""
        async with self.http.get(f"{self.builder()}/v1/salesforce/authorize", headers=self.admin) as resp:
            assert resp.status == 200, await resp.text()
        async with self.http.get(f"{self.builder()}/v1/orgs", headers=self.admin) as resp:
            return str((await resp.json())["orgs"][0]["org_id"])

    async def create(
        self, org_id: str, name: str, *, manager: int = 0, username: str = DEMO_USERNAME
    ) -> tuple[int, dict[str, Any]]:
        body = {
            "name": name,
            "admin_email": "it@acme.example",
            "salesforce_username": username,
            "org_id": org_id,
        }
        headers = {**self.auth, "Idempotency-Key": uuid.uuid4().hex}
        async with self.http.post(f"{self.manager(manager)}/v1/connections", json=body, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def connection(self, cid: str, *, manager: int = 0) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.manager(manager)}/v1/connections/{cid}", headers=self.auth) as r:
            return r.status, await r.json(content_type=None)

    async def statuses(self, ids: list[str], *, manager: int = 0) -> dict[str, dict[str, Any]]:
        """Every connection of the Manager (paged), restricted to ``ids``."""
        wanted, out, cursor = set(ids), {}, None
        while True:
            params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
            async with self.http.get(
                f"{self.manager(manager)}/v1/connections", params=params, headers=self.auth
            ) as r:
                assert r.status == 200, await r.text()
                page = await r.json()
            out.update({c["id"]: c for c in page["items"] if c["id"] in wanted})
            cursor = page["next_cursor"]
            if not cursor:
                return out

    async def wait_settled(self, ids: list[str], *, deadline_s: float) -> dict[str, dict[str, Any]]:
        """Wait until no connection of ``ids`` is pending; returns the last view of each."""
        last: dict[str, dict[str, Any]] = {}

        async def settled() -> bool:
            nonlocal last
            try:
                last = await self.statuses(ids)
            except (aiohttp.ClientError, AssertionError, TimeoutError):
                return False
            return len(last) == len(ids) and all(c["status"] in TERMINAL for c in last.values())

        try:
            await eventually(settled, deadline_s=deadline_s, what="every connection settled", every_s=0.5)
        except Deadline:
            pass  # the caller counts what is still pending as its own figure
        return last

    async def token(
        self, cid: str, *, manager: int = 0, force_refresh: bool = False
    ) -> tuple[int, dict[str, Any]]:
        params = {"force_refresh": "true"} if force_refresh else {}
        async with self.http.get(
            f"{self.manager(manager)}/v1/connections/{cid}/token", params=params, headers=self.auth
        ) as r:
            body = await r.json(content_type=None)
        if r.status == 200:
            self.served_tokens.add(body["access_token"])
        return r.status, body

    # -- the simulator's admin API --------------------------------------------------------------
    async def sim_state(self) -> dict[str, Any]:
        async with self.http.get(f"{self.stack.sim_url}/__sim/state") as r:
            return dict(await r.json())

    async def sim_org(self) -> dict[str, Any]:
        async with self.http.get(f"{self.stack.sim_url}/__sim/orgs/{self.stack.org_key}") as r:
            return dict(await r.json())

    async def sim_apps(self) -> list[str]:
        async with self.http.get(f"{self.stack.sim_url}/__sim/orgs/{self.stack.org_key}/apps") as r:
            apps = (await r.json())["apps"]
        return [a.get("full_name") or a.get("fullName") for a in apps]

    async def patch_org(self, **knobs: Any) -> dict[str, Any]:
        async with self.http.patch(f"{self.stack.sim_url}/__sim/orgs/{self.stack.org_key}", json=knobs) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())

    async def metric(self, service: str, name: str, **labels: str) -> float:
        """Sum of the Prometheus samples ``name`` (with ``labels``) that ``service`` exports on /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        async with self.http.get(f"{self.stack.url(service)}/metrics") as r:
            text = await r.text()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    async def jwt_mints(self) -> int:
        """How many JWT-bearer tokens the simulator has issued so far."""
        return int((await self.sim_state())["tokens"]["issued"].get("jwt_bearer", 0))


def duplicates(names: list[str]) -> dict[str, int]:
    """Names that occur more than once, with their counts."""
    return {n: c for n, c in Counter(names).items() if c > 1}


def outcome_figures(views: dict[str, dict[str, Any]], ids: list[str]) -> dict[str, Any]:
    """Counts by status and by failure code for the connections ``ids``."""
    statuses = Counter(views[i]["status"] if i in views else "lost" for i in ids)
    codes = Counter(
        (views[i].get("error") or {}).get("code", "?")
        for i in ids
        if views.get(i, {}).get("status") == "failed"
    )
    return {
        "in_flight": len(ids),
        "completed": statuses.get("active", 0),
        "failed": statuses.get("failed", 0),
        "failed_by_code": dict(codes),
        "still_pending": statuses.get("pending", 0),
        "lost": statuses.get("lost", 0),
    }
