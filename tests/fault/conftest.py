"""Fixtures of the fault suite: stacks of separate processes, each secret-scanned when its test ends."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aiohttp
import pytest

from shared.amqp import Topology
from tests.fault.harness import Api, FaultStack, start_fault_stack, write_figures
from tests.fault.secrets_scan import scan

Launch = Callable[..., Awaitable[Api]]


async def _drop_topology(stack: FaultStack) -> None:
    with contextlib.suppress(Exception):
        conn = await aio_pika.connect(stack.amqp_url, timeout=10)
        try:
            channel = await conn.channel()
            await Topology(prefix=stack.amqp_prefix).delete_all(channel, instance_ids=stack.managers())
        finally:
            await conn.close()


@pytest.fixture
async def launch(amqp_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Launch]:
    """Start a stack (``builders``, ``managers``, env overrides, simulator knobs) and an Api on it.

    When the test ends: the services are stopped (SIGTERM), then the database, every queue of the
    stack's prefix and every log are scanned for every secret the stack issued (zero hits required),
    then everything is stopped and the broker objects deleted. Logs are kept when the test failed.
    """
    started: list[tuple[FaultStack, Api]] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def start(**kwargs: Any) -> Api:
        stack = await asyncio.to_thread(lambda: start_fault_stack(amqp_url, **kwargs))
        api = Api(stack, session)
        started.append((stack, api))
        return api

    try:
        yield start
    finally:
        problems: list[str] = []
        for stack, api in started:
            try:
                await asyncio.to_thread(stack.stop_services)
                report = await scan(stack, api.served_tokens)
                name = request.node.name.removeprefix("test_")[:80]
                write_figures(f"secret-scan.{name}", report.figures())
                if report.hits:
                    problems.append(f"secrets leaked: {report.figures()['hit_places']}")
            finally:
                await asyncio.to_thread(stack.stop)
                await _drop_topology(stack)
                failed = getattr(request.node, "rep_call", None)
                if failed is None or not failed.failed:
                    shutil.rmtree(stack.workdir, ignore_errors=True)
                else:
                    print(f"\nlogs kept in {stack.logs_dir}")
        await session.close()
        assert not problems, problems


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the item (the fixture keeps logs of failed tests)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
