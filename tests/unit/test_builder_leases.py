"""Connection leases: one delivery at a time, renewed while held, released even when the database hiccups."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest
from builder.leases import ConnectionBusy, ConnectionLeases
from builder.store import StoreUnavailable

from tests.unit.builder_fakes import FakeStore

pytestmark = pytest.mark.unit
KEY = "connection:conn-1"


class FlakyStore(FakeStore):
    """A FakeStore whose lease calls fail (as a stalled database does) while ``away`` is set.

    With ``lands`` set, a failing ``try_lease`` still takes the lease: the write reached the database but
    its answer never came back.
    """

    def __init__(self) -> None:
        super().__init__()
        self.away = False
        self.lands = True
        self.release_calls = 0

    async def try_lease(self, key: str, holder: str, seconds: float) -> bool:
        if self.away:
            if self.lands:
                await super().try_lease(key, holder, seconds)
            raise StoreUnavailable("MongoDB timed out (NetworkTimeout)", retry_after=5)
        return await super().try_lease(key, holder, seconds)

    async def release_lease(self, key: str, holder: str) -> None:
        self.release_calls += 1
        if self.away:
            raise StoreUnavailable("MongoDB timed out (NetworkTimeout)", retry_after=5)
        await super().release_lease(key, holder)


async def _until(predicate: Callable[[], bool], within: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not predicate():
        assert loop.time() < end, "not reached in time"
        await asyncio.sleep(0.01)


async def test_a_second_delivery_is_busy_while_the_first_holds_the_lease_and_free_after() -> None:
    store = FakeStore()
    leases = ConnectionLeases(store, "builder-a", seconds=5)
    async with leases.hold("conn-1"):
        with pytest.raises(ConnectionBusy):
            async with leases.hold("conn-1"):
                pass
    assert store.leases == {}
    async with leases.hold("conn-1"):
        assert KEY in store.leases


async def test_a_held_lease_is_renewed_every_third_of_its_length() -> None:
    store = FakeStore()
    leases = ConnectionLeases(store, "builder-a", seconds=0.3)
    async with leases.hold("conn-1"):
        first_until = store.leases[KEY][1]
        await asyncio.sleep(0.45)
        assert store.leases[KEY][1] > first_until, "renewed"
        with pytest.raises(ConnectionBusy):
            async with ConnectionLeases(store, "builder-b", seconds=0.3).hold("conn-1"):
                pass


async def test_a_lease_taken_while_the_database_stalled_is_released_as_soon_as_it_answers() -> None:
    store = FlakyStore()
    leases = ConnectionLeases(store, "builder-a", seconds=30, release_retry_seconds=0.02)
    store.away = True
    with pytest.raises(StoreUnavailable):
        async with leases.hold("conn-1"):
            pass
    assert KEY in store.leases, "the write landed, its answer was lost, the release failed"
    await asyncio.sleep(0.1)
    assert KEY in store.leases and store.release_calls > 2, "retried while the database is away"
    store.away = False
    await _until(lambda: KEY not in store.leases, within=2)
    async with ConnectionLeases(store, "builder-b", seconds=30).hold("conn-1"):
        pass  # the redelivery goes on at once, not 30 s later
    await leases.close()


async def test_a_failed_release_is_tried_again_only_until_the_lease_has_expired() -> None:
    store = FlakyStore()
    leases = ConnectionLeases(store, "builder-a", seconds=0.2, release_retry_seconds=0.02)
    async with leases.hold("conn-1"):
        store.away = True
    assert leases._releasing, "a background release is running"
    await _until(lambda: not leases._releasing, within=2)
    calls = store.release_calls
    await asyncio.sleep(0.1)
    assert store.release_calls == calls, "gave up once the lease expired"


async def test_closing_stops_background_releases() -> None:
    store = FlakyStore()
    leases = ConnectionLeases(store, "builder-a", seconds=30, release_retry_seconds=0.02)
    async with leases.hold("conn-1"):
        store.away = True
    assert leases._releasing
    await leases.close()
    assert not leases._releasing


class SwallowingStore(FakeStore):
    """A store whose renewal, once ``swallow`` is set, turns a cancel into a database error."""

    def __init__(self) -> None:
        super().__init__()
        self.swallow = False
        self.renewing = asyncio.Event()

    async def try_lease(self, key: str, holder: str, seconds: float) -> bool:
        if not self.swallow:
            return await super().try_lease(key, holder, seconds)
        self.renewing.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass  # lost, as in Python 3.11's wait_for race inside the driver
        raise StoreUnavailable("MongoDB timed out (ServerSelectionTimeoutError)", retry_after=5)


async def test_leaving_the_lease_ends_the_renewal_even_when_the_database_call_loses_the_cancel() -> None:
    store = SwallowingStore()
    leases = ConnectionLeases(store, "builder-a", seconds=0.3)

    async def hold() -> None:
        async with leases.hold("conn-1"):
            store.swallow = True
            await store.renewing.wait()

    await asyncio.wait_for(hold(), 2)
    assert store.leases == {}


async def test_a_delivery_whose_lease_was_taken_over_is_stopped_and_reported_busy() -> None:
    store = FakeStore()
    leases = ConnectionLeases(store, "builder-a", seconds=0.3)
    reached_the_end = False
    with pytest.raises(ConnectionBusy, match="lost its lease"):
        async with leases.hold("conn-1"):
            # the database was away longer than the lease: another delivery took it meanwhile
            store.leases[KEY] = ("builder-b:other", store.leases[KEY][1] + timedelta(seconds=60))
            await asyncio.sleep(5)  # a long Salesforce call; stopped at the next renewal (~0.1 s)
            reached_the_end = True
    assert not reached_the_end
    assert store.leases[KEY][0] == "builder-b:other", "the other delivery's lease is left alone"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0, "no cancel request left behind"


async def test_a_shutdown_cancel_while_holding_the_lease_stays_a_cancel() -> None:
    store = FakeStore()
    leases = ConnectionLeases(store, "builder-a", seconds=30)
    entered = asyncio.Event()

    async def work() -> None:
        async with leases.hold("conn-1"):
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(work())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.leases == {}
