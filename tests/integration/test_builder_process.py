"""``python -m builder`` as a process: bad configuration is one clear line; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from shared.amqp import Publisher, Topology, connect
from shared.contracts import CreateConnection
from shared.crypto import generate_key
from shared.sealing import generate_recipient_key
from tests.infra import free_port

pytestmark = pytest.mark.integration


async def _delete_topology(amqp_url: str, prefix: str) -> None:
    conn = await connect(amqp_url, name="builder-process-test-cleanup")
    try:
        await Topology(prefix=prefix).delete_all(await conn.channel())
    finally:
        await conn.close()


def _env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return {**keep, **extra}


def test_bad_configuration_exits_non_zero_with_one_line_naming_the_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "builder"],
        env=_env(ENCRYPTION_KEYS="k1:not-base64!", AMQP_URL="http://nope"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("invalid configuration:")
    assert "AMQP_URL" in lines[0] and "SALESFORCE_CLIENT_ID" in lines[0]
    assert "not-base64" not in lines[0], "values are never echoed"


def test_the_service_serves_and_stops_cleanly_on_sigterm(
    mongodb_url: str, mongo_db: Any, amqp_url: str, amqp_prefix: str
) -> None:
    port = free_port()
    _private, public = generate_recipient_key("mgr1")
    env = _env(
        MONGODB_URL=mongodb_url,
        MONGODB_DATABASE=mongo_db.name,
        AMQP_URL=amqp_url,
        AMQP_PREFIX=amqp_prefix,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        ENCRYPTION_KEYS=f"k1:{generate_key()}",
        RECIPIENT_PUBLIC_KEYS=public,
        ADMIN_API_KEY="process-test-admin-key-0123",
        SALESFORCE_CLIENT_ID="cid",
        SALESFORCE_CLIENT_SECRET="csecret-value",
        SALESFORCE_CALLBACK_URL=f"http://127.0.0.1:{port}/v1/salesforce/callback",
        LOG_LEVEL="INFO",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                    ready = resp.status == 200
                    break
            except OSError:
                time.sleep(0.2)
        assert ready, "the Builder did not become ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        asyncio.run(_delete_topology(amqp_url, amqp_prefix))
    assert proc.returncode == 0, err
    assert '"event": "builder stopped"' in out
    assert "consumer started" in out


def _process_env(mongodb_url: str, database: str, amqp_url: str, prefix: str, port: int) -> dict[str, str]:
    _private, public = generate_recipient_key("mgr1")
    return _env(
        MONGODB_URL=mongodb_url,
        MONGODB_DATABASE=database,
        AMQP_URL=amqp_url,
        AMQP_PREFIX=prefix,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        ENCRYPTION_KEYS=f"k1:{generate_key()}",
        RECIPIENT_PUBLIC_KEYS=public,
        ADMIN_API_KEY="process-test-admin-key-0123",
        SALESFORCE_CLIENT_ID="cid",
        SALESFORCE_CLIENT_SECRET="csecret-value",
        SALESFORCE_CALLBACK_URL=f"http://127.0.0.1:{port}/v1/salesforce/callback",
        LOG_LEVEL="INFO",
    )


async def _queue_a_command(amqp_url: str, topology: Topology) -> None:
    conn = await connect(amqp_url, name="builder-process-test-publisher")
    try:
        channel = await conn.channel()
        await topology.declare_builder(channel)
        await topology.declare_queue(channel, topology.replies_queue)
        publisher = Publisher(conn, topology, app_id="manager")
        await publisher.start()
        command = CreateConnection(
            connection_id="conn-port-taken",
            org_id="00D000000000001AAA",
            salesforce_username="ops@acme.example.com",
            admin_email="admin@acme.example.com",
            label="port taken",
            recipient_key_id="mgr1",
        )
        await publisher.send_command(command, reply_to=topology.replies_queue)
        await publisher.close()
    finally:
        await conn.close()


async def _ready_in_queue(amqp_url: str, name: str) -> int:
    conn = await connect(amqp_url, name="builder-process-test-inspect")
    try:
        queue = await (await conn.channel()).declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await conn.close()


def test_a_taken_http_port_stops_the_builder_before_it_takes_any_command(
    mongodb_url: str, mongo_db: Any, amqp_url: str, amqp_prefix: str
) -> None:
    topology = Topology(prefix=amqp_prefix)
    asyncio.run(_queue_a_command(amqp_url, topology))
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "builder"],
            env=_process_env(mongodb_url, mongo_db.name, amqp_url, amqp_prefix, port),
            capture_output=True,
            text=True,
            timeout=60,
        )
        waiting = asyncio.run(_ready_in_queue(amqp_url, topology.builder_queue))
    finally:
        taken.close()
        asyncio.run(_delete_topology(amqp_url, amqp_prefix))
    assert "consumer started" not in result.stdout and "builder started" not in result.stdout
    assert waiting == 1, "the queued command was neither taken nor lost"
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "address already in use" in lines[0].lower(), result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "HTTP_PORT" in lines[0]


def test_an_http_host_that_is_not_an_address_is_a_bad_setting() -> None:
    # nothing is reachable at these addresses: the host is refused before anything is connected to
    env = _process_env("mongodb://127.0.0.1:9/x", "x", "amqp://guest:guest@127.0.0.1:9/", "t.", free_port())
    result = subprocess.run(
        [sys.executable, "-m", "builder"],
        env={**env, "HTTP_HOST": "999.1.1.1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("invalid configuration: HTTP_HOST"), result.stderr
    assert "999.1.1.1" not in lines[0], "values are never echoed"
    assert "builder started" not in result.stdout and "consumer started" not in result.stdout
