"""The stack under test, built on ``devtools.stack.Stack``: services, baselines and the load generator.

Every service, baseline and load generator is its own process; this process only starts them, reads
their figures (psutil, /metrics, the simulator's /__sim state, the database) and writes the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
from pymongo import AsyncMongoClient

from devtools.stack import DEMO_USERNAME, ROOT, Proc, Stack, free_port

SCOPES = ("connections:write", "connections:read", "tokens:read")
USERNAME = DEMO_USERNAME  # an active user of the simulated org; every connection runs as it

__all__ = ["USERNAME", "BenchError", "BenchStack", "free_port"]


class BenchError(RuntimeError):
    """A scenario could not run (the message says which step and why)."""


@dataclass
class BenchStack:
    """SecantusDB, the simulator, N Builders and one Manager, plus baselines started on demand."""

    stack: Stack = field(default_factory=lambda: Stack(amqp_prefix=f"bench{uuid.uuid4().hex[:6]}."))
    builders: list[str] = field(default_factory=list)
    api_key: str = ""
    org_id: str = ""
    manager_env: dict[str, str] = field(default_factory=dict)
    builder_env: dict[str, str] = field(default_factory=dict)
    builder_ports: list[int] = field(default_factory=list)
    profile: frozenset[str] = frozenset()  # service names to run under pyinstrument
    profile_dir: Path | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, max_builders: int = 2) -> None:
        """Database, simulator (callbacks for up to ``max_builders``), one Builder, the Manager, a key, the org."""
        self.builder_ports = [free_port() for _ in range(max_builders)]
        self.stack.start_database()
        self.stack.start_simulator(self.builder_ports)
        self.add_builder()
        with self._profiled("manager"):
            self.stack.add_manager(**cast(dict[str, Any], self.manager_env))
        self.api_key = self.stack.create_api_key("bench", *SCOPES)
        self.org_id = asyncio.run(self._authorize())

    def sibling(self, label: str) -> BenchStack:
        """A new, unstarted stack with this one's settings: its own database, simulator, services, prefix."""
        return BenchStack(
            stack=Stack(amqp_url=self.stack.amqp_url, amqp_prefix=f"bench{uuid.uuid4().hex[:6]}."),
            manager_env=dict(self.manager_env),
            builder_env=dict(self.builder_env),
            profile=self.profile,
            profile_dir=(self.profile_dir / label) if self.profile_dir and self.profile else None,
        )

    def add_builder(self) -> str:
        name = f"builder{len(self.builders) + 1}" if self.builders else "builder"
        port = self.builder_ports[len(self.builders)]
        with self._profiled(name):
            self.stack.add_builder(
                name=name, port=port, INSTANCE_ID=name, **cast(dict[str, Any], self.builder_env)
            )
        self.builders.append(name)
        return name

    @contextlib.contextmanager
    def _profiled(self, name: str) -> Iterator[None]:
        """Start ``name`` under pyinstrument (its report is written when the process exits) if asked."""
        if name not in self.profile:
            yield
            return
        out_dir = self.profile_dir or self.stack.workdir
        out_dir.mkdir(parents=True, exist_ok=True)
        wrapper = self.stack.workdir / f"python-profiled-{name}"
        session = out_dir / f"profile-{name}.pyisession"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'exec "{sys.executable}" -m pyinstrument --interval 0.0005 -r pyisession -o "{session}" "$@"\n'
        )
        wrapper.chmod(0o755)
        original, self.stack.python = self.stack.python, str(wrapper)
        try:
            yield
        finally:
            self.stack.python = original

    def stop_builder(self, name: str) -> None:
        self.stack.procs[name].stop()
        del self.stack.procs[name]
        self.builders.remove(name)

    def launch(self, name: str, argv: list[str], *, ready_url: str, port: int) -> Proc:
        """Start a helper process (a baseline) the way the stack starts its services."""
        proc = Proc(
            name, argv, self.stack._env(), self.stack.workdir / "logs" / f"{name}.log", ready_url, port
        )
        self.stack.procs[name] = proc
        proc.start()
        proc.wait_ready(60)
        return proc

    def stop_proc(self, name: str) -> None:
        proc = self.stack.procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def close(self, keep_logs: bool) -> None:
        self.stack.stop()
        self._render_profiles()
        with contextlib.suppress(Exception):
            asyncio.run(self._drop_topology())
        if not keep_logs:
            import shutil

            shutil.rmtree(self.stack.workdir, ignore_errors=True)

    def _render_profiles(self) -> None:
        """Each profiled service wrote a session when it exited: render it as text, library frames shown."""
        out_dir = self.profile_dir or self.stack.workdir
        for name in sorted(self.profile):
            session = out_dir / f"profile-{name}.pyisession"
            if session.exists():
                subprocess.run(
                    [sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "text", "--no-color",
                     "--show", "*/pymongo/*", "--show", "*/aio_pika/*", "--show", "*/aiormq/*",
                     "--show", "*/jwt/*", "--show", "*/cryptography/*", "--show", "*/pydantic/*",
                     "-o", str(out_dir / f"profile-{name}.txt")],
                    check=False, timeout=120,
                )  # fmt: skip

    async def _drop_topology(self) -> None:
        import aio_pika

        from shared.amqp import Topology

        conn = await aio_pika.connect(self.stack.amqp_url, timeout=5)
        try:
            channel = await conn.channel()
            await Topology(prefix=self.stack.amqp_prefix).delete_all(channel, instance_ids=("manager",))
            for guarantees in ("product", "minimal"):  # the RPC echo baseline's request queues
                with contextlib.suppress(Exception):
                    await channel.queue_delete(f"{self.stack.amqp_prefix}bench.echo.{guarantees}")
        finally:
            await conn.close()

    async def _authorize(self) -> str:
        """Authorize the Builder in the simulated org by following the OAuth redirects."""
        admin = {"Authorization": f"Bearer {self.stack.admin_api_key}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.get(f"{self.url('builder')}/v1/salesforce/authorize", headers=admin) as resp:
                if resp.status != 200:
                    raise BenchError(f"authorizing the Builder failed with {resp.status}")
            async with http.get(f"{self.url('builder')}/v1/orgs", headers=admin) as resp:
                return str((await resp.json())["orgs"][0]["org_id"])

    # -- reading figures --------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return self.stack.url(name)

    def pid(self, name: str) -> int:
        popen = self.stack.procs[name].popen
        assert popen is not None
        return popen.pid

    def reset_simulator(self) -> None:
        """Forget every app the earlier scenarios made (the simulator's costs grow with its state), then
        authorize the Builder again: its stored refresh token died with the old state."""
        asyncio.run(self._sim("POST", "/__sim/reset"))
        self.org_id = asyncio.run(self._authorize())

    async def set_latency(self, latency_ms: int) -> None:
        await self._sim("PATCH", f"/__sim/orgs/{self.stack.org_key}", {"latency_ms": latency_ms})

    async def sim_counts(self) -> dict[str, Any]:
        """API requests counted by the simulator for the org, and tokens issued by flow."""
        state = await self._sim("GET", "/__sim/state")
        org = state["orgs"][self.stack.org_key]
        return {"api_requests": org["knobs"]["api_requests_used"], "issued": state["tokens"]["issued"]}

    async def _sim(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.request(method, f"{self.stack.sim_url}{path}", json=body) as resp,
        ):
            if resp.status >= 400:
                raise BenchError(f"simulator {method} {path}: {resp.status} {await resp.text()}")
            return await resp.json()

    async def metrics(self, name: str) -> dict[str, float]:
        """A service's Prometheus samples, summed over label sets, by sample name + sorted labels."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.get(f"{self.url(name)}/metrics") as resp,
        ):
            text = await resp.text()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = out.get(key, 0.0) + float(value)
        return out

    def database(self) -> Any:
        assert self.stack.mongodb_url
        return AsyncMongoClient(self.stack.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=10_000)

    # -- the load generator -----------------------------------------------------------------------
    def loadgen(self, *args: str, timeout: float = 1800.0) -> dict[str, Any]:
        """Run ``python -m bench.loadgen <args>`` as its own process; its JSON result."""
        out = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", *args],
            cwd=ROOT,
            env=self.stack._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise BenchError(f"load generator {args[0]} failed: {out.stderr.strip()[-800:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def ids_file(self, ids: list[str], name: str) -> Path:
        path = self.stack.workdir / f"{name}.ids"
        path.write_text("\n".join(ids) + "\n")
        return path
