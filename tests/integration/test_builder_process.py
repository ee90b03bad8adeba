"""``python -m builder`` as a process: bad configuration is one clear line; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from shared.amqp import Topology, connect
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
