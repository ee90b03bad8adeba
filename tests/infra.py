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
import functools
import ipaddress
import json
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
from urllib.parse import urlsplit

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
SECANTUS_VERSION = "0.7.0b3"


@dataclass
class Infra:
    """What the session used, printed at the end of the run."""

    used: dict[str, str] = field(default_factory=dict)
    amqp_url: str | None = None  # the broker this session chose


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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.cache
def broker_control_problem(url: str) -> str | None:
    """Why ``rabbitmqctl`` on this machine cannot control the broker at ``url``; None when it can.

    It can when the URL's host is loopback, ``rabbitmqctl`` is installed and answers, and the node it talks
    to listens for AMQP on the URL's port (a testcontainers broker on a mapped port, or another broker
    reached through ``AMQP_URL``, is not the node the local ``rabbitmqctl`` controls).
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 5672
    if not _is_loopback(host):
        return f"the broker at {host}:{port} is not on this machine"
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed on this machine"
    try:
        done = subprocess.run(
            ["rabbitmqctl", "status", "--formatter", "json"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"rabbitmqctl status did not answer ({type(exc).__name__})"
    if done.returncode != 0:
        return f"rabbitmqctl status failed: {done.stderr.strip()[-300:]}"
    try:
        listeners = json.loads(done.stdout).get("listeners", [])
    except ValueError:
        return "rabbitmqctl status did not print JSON"
    ports = sorted({int(x["port"]) for x in listeners if str(x.get("protocol", "")).startswith("amqp")})
    if port not in ports:
        return (
            f"the node rabbitmqctl controls listens for AMQP on {ports or 'no port'}, "
            f"not on port {port} of the broker under test (a container or another broker?)"
        )
    return None


def broker_control_failure(url: str | None) -> str | None:
    """The message a test that must control the broker fails with; None when it may."""
    if url is None:
        return "no broker was chosen for this session (use the amqp_url fixture first)"
    problem = broker_control_problem(url)
    if problem is None:
        return None
    return (
        f"this test controls the broker with rabbitmqctl, but {problem}. Run it against a RabbitMQ node "
        "on this machine that rabbitmqctl can reach: unset AMQP_URL (or point it at 127.0.0.1:5672) and set "
        "SFCONNECT_TESTCONTAINERS=off, with rabbitmq-server installed and started"
    )


@contextlib.contextmanager
def rabbitmq() -> Iterator[str]:
    with _rabbitmq() as url:
        previous, INFRA.amqp_url = INFRA.amqp_url, url
        try:
            yield url
        finally:
            INFRA.amqp_url = previous


@contextlib.contextmanager
def _rabbitmq() -> Iterator[str]:
    if url := os.environ.get("AMQP_URL"):
        try:
            amqp_ping(url)
        except Exception as exc:
            raise RuntimeError(
                f"AMQP_URL is set but no broker at {_where(url)} accepted a connection within 10s "
                f"({type(exc).__name__}); fix or unset AMQP_URL"
            ) from None
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


MONGODB_PING_DEADLINE_S = 10.0


def mongodb_ping(url: str, deadline_s: float = MONGODB_PING_DEADLINE_S) -> None:
    """Ping the MongoDB-wire server at ``url``; one clear error when it does not answer in time."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    ms = int(deadline_s * 1000)
    try:
        client: MongoClient[dict[str, object]] = MongoClient(
            url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()
    except (PyMongoError, ValueError) as exc:
        raise RuntimeError(
            f"MONGODB_URL is set but no MongoDB-wire server at {_where(url)} answered a ping within "
            f"{deadline_s:g}s ({type(exc).__name__}); fix or unset MONGODB_URL"
        ) from None


def _where(url: str) -> str:
    """The host part of a URL, without credentials (safe to print)."""
    return urlsplit(url).netloc.rpartition("@")[2] or "(no host)"


@contextlib.contextmanager
def mongodb() -> Iterator[str]:
    if url := os.environ.get("MONGODB_URL"):
        mongodb_ping(url, MONGODB_PING_DEADLINE_S)
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
