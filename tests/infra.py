"""Finding real infrastructure for tests: environment, then testcontainers, then local servers.

Order for each of RabbitMQ and MongoDB:
1. ``AMQP_URL`` / ``MONGODB_URL`` from the environment;
2. testcontainers (RabbitMQ 4 with management, MongoDB 8) when a Docker engine answers;
3. local servers: the broker on 127.0.0.1:5672; SecantusDB started on a free port.
A test that needs infrastructure never skips silently: when none can be had it fails and says what to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
SECANTUS_VERSION = "0.7.0b3"


@dataclass
class Infra:
    """What the session used, printed at the end of the run."""

    used: dict[str, str] = field(default_factory=dict)


INFRA = Infra()


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker_engine_available() -> bool:
    if os.environ.get("SFCONNECT_TESTCONTAINERS", "auto") == "off" or not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def wait_for(predicate, deadline_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true, failing with a clear message at the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready within {deadline_s:.0f}s")


def amqp_ping(url: str, deadline_s: float = 10.0) -> None:
    import aio_pika

    async def ping() -> None:
        conn = await aio_pika.connect(url, timeout=deadline_s)
        await conn.close()

    asyncio.run(ping())


@contextlib.contextmanager
def rabbitmq() -> Iterator[str]:
    if url := os.environ.get("AMQP_URL"):
        amqp_ping(url)
        INFRA.used["rabbitmq"] = "from AMQP_URL"
        yield url
        return
    if docker_engine_available():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:4-management") as rc:
            params = rc.get_connection_params()
            url = f"amqp://guest:guest@{params.host}:{params.port}/"
            INFRA.used["rabbitmq"] = f"testcontainers rabbitmq:4-management at {params.host}:{params.port}"
            yield url
        return
    if _port_open("127.0.0.1", 5672):
        try:
            amqp_ping(LOCAL_AMQP)
        except Exception as exc:
            raise RuntimeError(
                f"a server listens on 127.0.0.1:5672 but guest/guest AMQP login failed: {exc}"
            ) from None
        INFRA.used["rabbitmq"] = "local broker at 127.0.0.1:5672"
        yield LOCAL_AMQP
        return
    raise RuntimeError(
        "no RabbitMQ for the tests: set AMQP_URL, run a Docker engine, or install and start RabbitMQ "
        "(apt-get install rabbitmq-server && rabbitmq-server -detached)"
    )


class SecantusProcess:
    """A SecantusDB daemon (``secantusd-py``) in its own process: can be stopped and restarted (fault tests)."""

    def __init__(self, storage: Path | None = None, port: int | None = None) -> None:
        self.storage = storage or Path(tempfile.mkdtemp(prefix="sfconnect-secantus-"))
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self, deadline_s: float = 30.0) -> None:
        exe = Path(sys.executable).with_name("secantusd-py")
        if not exe.exists():
            raise RuntimeError(
                f"secantusd-py not found beside {sys.executable}: install the dev dependencies "
                f"(make install; secantusdb=={SECANTUS_VERSION})"
            )
        self.proc = subprocess.Popen(
            [
                str(exe),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.storage),
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: _port_open("127.0.0.1", self.port, 0.2), deadline_s, f"SecantusDB on port {self.port}"
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@contextlib.contextmanager
def mongodb() -> Iterator[str]:
    if url := os.environ.get("MONGODB_URL"):
        INFRA.used["mongodb"] = "from MONGODB_URL"
        yield url
        return
    if docker_engine_available():
        from testcontainers.mongodb import MongoDbContainer

        with MongoDbContainer("mongo:8") as mc:
            INFRA.used["mongodb"] = "testcontainers mongo:8"
            yield mc.get_connection_url()
        return
    server = SecantusProcess()
    server.start()
    INFRA.used["mongodb"] = f"SecantusDB {SECANTUS_VERSION} (secantusd-py) at 127.0.0.1:{server.port}"
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.storage, ignore_errors=True)
