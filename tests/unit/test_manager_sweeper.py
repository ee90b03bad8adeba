"""The outbox sweeper's loop: it sweeps on its interval, survives failures and always stops."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from manager.sweeper import Sweeper

pytestmark = pytest.mark.unit


class Service:
    """Stands in for ConnectionService.sweep_once; ``swallow`` turns a cancel into a driver error."""

    def __init__(self, *, fail: bool = False, swallow: bool = False) -> None:
        self.fail = fail
        self.swallow = swallow
        self.calls = 0

    async def sweep_once(self) -> int:
        self.calls += 1
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if not self.swallow:
                raise
            # what a lost cancellation looks like from the loop: the call ends with a timeout error
            raise TimeoutError("server selection timed out") from None
        if self.fail:
            raise ConnectionError("database unavailable")
        return 0


def _sweeper(service: Service, interval: float = 0.01) -> Sweeper:
    return Sweeper(cast(Any, service), interval=interval)


async def test_the_sweeper_keeps_sweeping_through_failures_and_stops_when_asked() -> None:
    service = Service(fail=True)
    sweeper = _sweeper(service)
    sweeper.start()
    await asyncio.sleep(0.3)
    await asyncio.wait_for(sweeper.stop(), 1)
    assert service.calls >= 3
    calls = service.calls
    await asyncio.sleep(0.1)
    assert service.calls == calls


async def test_stop_returns_even_when_the_database_call_swallows_the_cancellation() -> None:
    service = Service(fail=True, swallow=True)
    sweeper = _sweeper(service)
    sweeper.start()
    await asyncio.sleep(0.02)  # inside sweep_once
    await asyncio.wait_for(sweeper.stop(), 1)
    calls = service.calls
    await asyncio.sleep(0.1)
    assert service.calls == calls


async def test_stop_does_not_wait_out_a_long_interval() -> None:
    sweeper = _sweeper(Service(), interval=60)
    sweeper.start()
    await asyncio.sleep(0.1)  # the first round is done; the loop now waits for the next one
    await asyncio.wait_for(sweeper.stop(), 1)
