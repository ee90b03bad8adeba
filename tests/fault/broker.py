"""Broker-wide faults on the shared local RabbitMQ (root only): an app restart and a memory alarm.

Both disturb every user of the broker, so each always restores it (``finally``) and waits, with a
deadline, until it answers AMQP again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika

from tests.fault.harness import rabbitmqctl


async def amqp_answers(url: str) -> bool:
    try:
        conn = await aio_pika.connect(url, timeout=3)
    except Exception:
        return False
    await conn.close()
    return True


async def wait_for_broker(url: str, deadline_s: float = 90.0) -> float:
    """Wait until the broker accepts an AMQP connection; returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if await amqp_answers(url):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"RabbitMQ did not answer AMQP within {deadline_s:.0f}s")


async def restart_broker(url: str, down_s: float) -> dict[str, float]:
    """``rabbitmqctl stop_app``, stay down ``down_s``, ``start_app``; always started again."""
    started = time.monotonic()
    try:
        await rabbitmqctl("stop_app")
        stopped = time.monotonic()
        await asyncio.sleep(down_s)
    finally:
        await rabbitmqctl("start_app", timeout_s=120)
    app_started = time.monotonic()
    waited = await wait_for_broker(url)
    return {
        "stop_app_seconds": round(stopped - started, 1),
        "held_down_seconds": down_s,
        "start_app_seconds": round(app_started - stopped - down_s, 1),
        "amqp_answering_after_start_app_s": round(waited, 1),
        "broker_unavailable_seconds": round(time.monotonic() - started, 1),
    }


async def broker_status() -> dict[str, Any]:
    """``rabbitmqctl status`` as JSON."""
    return dict(json.loads(await rabbitmqctl("status", "--formatter", "json")))


async def memory_watermark() -> str:
    """The broker's current vm_memory_high_watermark setting, as set_vm_memory_high_watermark takes it."""
    setting = (await broker_status()).get("vm_memory_high_watermark_setting") or {}
    if "absolute" in setting:
        return f"absolute {setting['absolute']}"
    if "relative" in setting:
        return str(float(setting["relative"]))
    raise RuntimeError(f"unknown vm_memory_high_watermark setting {setting!r}: not changing it")


async def memory_alarm_raised() -> bool:
    """True while the broker reports a memory alarm."""
    return any("memory" in str(alarm).lower() for alarm in (await broker_status()).get("alarms") or [])


@contextlib.asynccontextmanager
async def memory_alarm(url: str) -> AsyncIterator[str]:
    """Set a tiny memory watermark (publishers are blocked); restore the original value afterwards."""
    original = await memory_watermark()
    try:
        await rabbitmqctl("set_vm_memory_high_watermark", "0.0000001")
        yield original
    finally:
        await rabbitmqctl("set_vm_memory_high_watermark", *original.split())
        await wait_for_broker(url)
