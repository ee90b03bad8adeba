"""Start the embedded default stack as local processes: SecantusDB, the simulator, Builders and Managers.

Used by ``make demo``, ``make run``, the e2e and fault tests and the benchmarks. Every process writes
its log to ``<workdir>/logs/<name>.log``; every wait has a deadline; ``Stack.stop()`` terminates
everything it started (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.crypto import generate_key
from shared.sealing import generate_recipient_key

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/?reconnect_interval=1"
DEMO_USERNAME = "o'brien+erp&sync@acme.example"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(200 <= resp.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when the harness dies, so nothing is orphaned."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class StackError(RuntimeError):
    """A process did not start or become ready; the message names it and points at its log."""


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_url: str | None = None
    port: int | None = None
    # Linux ties this to the thread that started the child: only for processes started on the main thread.
    die_with_parent: bool = False
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        log.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if not self.alive():
                raise StackError(
                    f"{self.name} exited with {self.popen.returncode if self.popen else '?'}: {self.tail()}"
                )
            if self.ready_url and http_ok(self.ready_url):
                return
            if self.ready_url is None and self.port and port_open("127.0.0.1", self.port):
                return
            time.sleep(0.1)
        raise StackError(
            f"{self.name} was not ready within {deadline_s:.0f}s (log: {self.log_path}): {self.tail()}"
        )

    def tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def signal(self, sig: int) -> None:
        if self.alive() and self.popen is not None:
            os.killpg(self.popen.pid, sig)

    def stop(self, grace_s: float = 15.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode


@dataclass
class Stack:
    """The local stack. ``start()`` brings up the database and simulator; add services with the ``add_*``."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sfconnect-stack-")))
    amqp_url: str = LOCAL_AMQP
    amqp_prefix: str = ""
    mongodb_url: str | None = None
    sim_latency_ms: int = 0
    sim_propagation_delay_s: float = 0.0
    python: str = sys.executable
    procs: dict[str, Proc] = field(default_factory=dict)
    manager_keys: str = field(default_factory=lambda: f"k1:{generate_key()}")
    builder_keys: str = field(default_factory=lambda: f"k1:{generate_key()}")
    admin_api_key: str = field(default_factory=lambda: "adm_" + generate_key())
    recipient: tuple[str, str] = field(default_factory=lambda: generate_recipient_key("m1"))
    sim_port: int = 0
    db_port: int = 0
    builder_client_id: str = "sfconnectBuilderClientId0001"
    builder_client_secret: str = field(
        default_factory=lambda: generate_key().replace("-", "A").replace("_", "B")
    )
    org_key: str = "acme"
    die_with_parent: bool = False  # demo and make run: children end with the harness (main thread only)

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def _env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "MONGODB_", "SIM_", "HTTP_"))
        }
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "AMQP_URL": self.amqp_url,
                "AMQP_PREFIX": self.amqp_prefix,
                "LOG_LEVEL": "INFO",
            }
        )
        if self.mongodb_url:
            env["MONGODB_URL"] = self.mongodb_url
        env.update(extra)
        return env

    def _launch(self, proc: Proc, deadline_s: float = 60.0) -> Proc:
        proc.die_with_parent = self.die_with_parent
        self.procs[proc.name] = proc
        proc.start()
        proc.wait_ready(deadline_s)
        return proc

    def start_database(self) -> None:
        if self.mongodb_url:
            return
        exe = Path(self.python).with_name("secantusd-py")
        if not exe.exists():
            raise StackError(f"{exe} not found: run `make install` (secantusdb is a dev dependency)")
        self.db_port = self.db_port or free_port()
        storage = self.workdir / "secantus-data"
        self.mongodb_url = f"mongodb://127.0.0.1:{self.db_port}/"
        self._launch(
            Proc(
                "secantusdb",
                [
                    str(exe),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.db_port),
                    "--storage-path",
                    str(storage),
                    "--log-level",
                    "WARNING",
                ],
                self._env(),
                self.workdir / "logs" / "secantusdb.log",
                port=self.db_port,
            )
        )

    def restart_database(self) -> None:
        proc = self.procs["secantusdb"]
        proc.popen = None
        proc.start()
        proc.wait_ready(60)

    def sim_config(self, builder_ports: list[int]) -> dict[str, Any]:
        """The simulator's state file: the Builder's client app and one org with a few users."""
        return {
            "auto_approve": True,
            "base_url": self.sim_url,
            "builder_app": {
                "client_id": self.builder_client_id,
                "client_secret": self.builder_client_secret,
                "callback_urls": [f"http://127.0.0.1:{p}/v1/salesforce/callback" for p in builder_ports],
            },
            "orgs": [
                {
                    "key": self.org_key,
                    "name": "Acme Corporation",
                    "knobs": {
                        "latency_ms": self.sim_latency_ms,
                        "propagation_delay_seconds": self.sim_propagation_delay_s,
                    },
                    "users": [
                        {
                            "username": "admin@acme.example",
                            "name": "Ada Admin",
                            "profile": "System Administrator",
                        },
                        {"username": DEMO_USERNAME, "name": "Integration User"},
                        {
                            "username": "former.employee@acme.example",
                            "name": "Former Employee",
                            "active": False,
                        },
                    ],
                }
            ],
        }

    def start_simulator(self, builder_ports: list[int]) -> None:
        self.sim_port = self.sim_port or free_port()
        config = self.sim_config(builder_ports)
        path = self.workdir / "sim-config.json"
        path.write_text(json.dumps(config, indent=2))
        self._launch(
            Proc(
                "simulator",
                [
                    self.python,
                    "-m",
                    "salesforce_sim",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.sim_port),
                    "--config",
                    str(path),
                ],
                self._env(SIM_CONFIG=str(path)),
                self.workdir / "logs" / "simulator.log",
                ready_url=f"{self.sim_url}/services/data/",
            )
        )

    def add_builder(self, name: str = "builder", port: int | None = None, **extra: str) -> Proc:
        port = port or free_port()
        env = self._env(
            SERVICE_NAME=name,
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(port),
            MONGODB_DATABASE="sfconnect_builder",
            ENCRYPTION_KEYS=self.builder_keys,
            RECIPIENT_PUBLIC_KEYS=self.recipient[1],
            ADMIN_API_KEY=self.admin_api_key,
            SALESFORCE_CLIENT_ID=self.builder_client_id,
            SALESFORCE_CLIENT_SECRET=self.builder_client_secret,
            SALESFORCE_LOGIN_URL=self.sim_url,
            SALESFORCE_CALLBACK_URL=f"http://127.0.0.1:{port}/v1/salesforce/callback",
            **extra,
        )
        return self._launch(
            Proc(
                name,
                [self.python, "-m", "builder"],
                env,
                self.workdir / "logs" / f"{name}.log",
                ready_url=f"http://127.0.0.1:{port}/readyz",
                port=port,
            )
        )

    def add_manager(self, name: str = "manager", port: int | None = None, **extra: str) -> Proc:
        port = port or free_port()
        env = self._env(
            SERVICE_NAME=name,
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(port),
            MONGODB_DATABASE="sfconnect_manager",
            ENCRYPTION_KEYS=self.manager_keys,
            RECIPIENT_PRIVATE_KEYS=self.recipient[0],
            INSTANCE_ID=name,
            **extra,
        )
        return self._launch(
            Proc(
                name,
                [self.python, "-m", "manager"],
                env,
                self.workdir / "logs" / f"{name}.log",
                ready_url=f"http://127.0.0.1:{port}/readyz",
                port=port,
            )
        )

    def manager_cli(self, *args: str, name: str = "manager") -> str:
        """Run ``python -m manager <args>`` with the manager's environment; returns stdout."""
        env = (
            dict(self.procs[name].env)
            if name in self.procs
            else self._env(
                MONGODB_DATABASE="sfconnect_manager",
                ENCRYPTION_KEYS=self.manager_keys,
                RECIPIENT_PRIVATE_KEYS=self.recipient[0],
            )
        )
        out = subprocess.run(
            [self.python, "-m", "manager", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise StackError(f"manager {' '.join(args[:2])} failed: {out.stderr.strip()[-500:]}")
        return out.stdout

    def create_api_key(self, name: str, *scopes: str, manager: str = "manager") -> str:
        """Create a Manager API key with the CLI (all scopes when none are named); returns the key."""
        scopes = scopes or ("connections:write", "connections:read", "tokens:read")
        args = ["api-keys", "create", "--name", name]
        for scope in scopes:
            args += ["--scope", scope]
        return self.manager_cli(*args, name=manager).strip().splitlines()[-1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.procs[name].port}"

    def stop(self) -> dict[str, int | None]:
        codes = {}
        for name in reversed(list(self.procs)):
            codes[name] = self.procs[name].stop()
        return codes

    def drop_topology(self) -> None:
        """Remove this stack's prefixed exchanges and queues from the (shared) broker."""
        if not self.amqp_prefix:
            return
        managers = tuple(name for name in self.procs if name.startswith("manager"))
        thread = threading.Thread(
            target=asyncio.run, args=(_drop(self.amqp_url, self.amqp_prefix, managers),)
        )
        thread.start()
        thread.join(30)

    def cleanup(self) -> None:
        self.stop()
        self.drop_topology()
        shutil.rmtree(self.workdir, ignore_errors=True)


async def _drop(amqp_url: str, prefix: str, instance_ids: tuple[str, ...]) -> None:
    import aio_pika

    from shared.amqp import Topology

    try:
        conn = await aio_pika.connect(amqp_url, timeout=5)
    except Exception:  # the broker is gone: nothing to clean
        return
    try:
        channel = await conn.channel()
        await Topology(prefix=prefix).delete_all(channel, instance_ids=instance_ids)
    finally:
        await conn.close()
