"""The per-connection lease: one delivery at a time works on a connection, across every Builder replica.

The lease is a document in MongoDB (``leases``: ``connection:<id>``, holder, until). It is short
(``CONNECTION_LEASE_SECONDS``) and renewed every third of it while the command runs, so the connections of a
Builder that is SIGKILLed are taken over by a redelivered command within that time
(tests/fault/test_fault_builder_kill.py). A delivery cancelled while taking or holding the lease releases
it (tests/fault/test_fault_builder_lease.py). A release that fails because the database is away is tried
again in the background until it succeeds or the lease has expired anyway: a lease write sent to a
stalled database may land once it answers again, and releasing it then lets the redelivered command go on
at once. A delivery whose renewal finds the lease taken by another (its database was away for longer than
the lease) is stopped at that renewal and retried later as ``connection_busy`` rather than going on beside
the other (tests/unit/test_builder_leases.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from builder.store import Store
from shared.errors import RetryableError, SfconnectError
from shared.logging import get_logger

log = get_logger(__name__)

# Short, renewed every third of it: a crashed Builder frees its connections within this time.
CONNECTION_LEASE_SECONDS = 20.0


class ConnectionBusy(RetryableError):
    """Another delivery of a command for this connection is being handled right now."""

    code = "connection_busy"


@dataclass
class ConnectionLeases:
    """Takes, renews and releases connection leases for one Builder replica (``holder``)."""

    store: Store
    holder: str
    seconds: float = CONNECTION_LEASE_SECONDS
    release_retry_seconds: float = 1.0
    _releasing: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    @contextlib.asynccontextmanager
    async def hold(self, connection_id: str) -> AsyncIterator[None]:
        """Hold the connection's lease while the block runs, renewing it; ConnectionBusy if another has it."""
        key = f"connection:{connection_id}"
        holder = (
            f"{self.holder}:{uuid.uuid4().hex}"  # one per delivery: two in one process exclude each other
        )
        try:
            acquired = await self.store.try_lease(key, holder, self.seconds)
        except BaseException:
            # Cancelled (connection lost) or failed mid-call: the upsert may have landed; drop it if so.
            await self._release(key, holder)
            raise
        if not acquired:
            raise ConnectionBusy(
                f"connection {connection_id} is being handled by another delivery", retry_after=10
            )
        owner = asyncio.current_task()
        lost: list[bool] = []

        def stop_the_block() -> None:
            # Another delivery holds the connection now (ours could not be renewed in time): the block must
            # not go on writing beside it. It is cancelled here and ends in ConnectionBusy (retried later).
            lost.append(True)
            if owner is not None:
                owner.cancel()

        renewal = asyncio.create_task(self._renew(key, holder, on_lost=stop_the_block))
        try:
            yield
        except asyncio.CancelledError:
            if lost and owner is not None and owner.uncancel() == 0:  # our cancel alone, not a shutdown
                raise ConnectionBusy(
                    f"connection {connection_id}: this delivery lost its lease to another one and stopped",
                    retry_after=10,
                ) from None
            raise
        finally:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
            await self._release(key, holder)

    async def close(self) -> None:
        """Stop the background releases (the leases they were trying to release expire by themselves)."""
        for task in list(self._releasing):
            task.cancel()
        await asyncio.gather(*self._releasing, return_exceptions=True)

    async def _renew(self, key: str, holder: str, *, on_lost: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                if not await self.store.try_lease(key, holder, self.seconds):
                    log.warning("connection lease lost to another delivery; stopping this one", lease=key)
                    on_lost()
                    return
            except SfconnectError as exc:  # database briefly away: try again at the next tick
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # the cancel from hold() was lost inside the database call (Python 3.11's
                    # wait_for race): stop anyway, or hold() would wait for this loop for ever
                    raise asyncio.CancelledError from None
                log.warning("connection lease not renewed", lease=key, error=exc.code)

    async def _release(self, key: str, holder: str) -> None:
        """Release a lease even from a cancelled task; when that fails, keep trying in the background."""
        try:
            await asyncio.shield(self.store.release_lease(key, holder))
        except (asyncio.CancelledError, Exception) as exc:
            log.warning("connection lease not released yet; retrying", lease=key, error=type(exc).__name__)
            task = asyncio.create_task(self._release_until_expired(key, holder))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release_until_expired(self, key: str, holder: str) -> None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.seconds  # every lease write was sent before now: expired by then
        while loop.time() < give_up_at:
            await asyncio.sleep(self.release_retry_seconds)
            try:
                await self.store.release_lease(key, holder)
            except Exception as exc:
                log.debug("connection lease release failed again", lease=key, error=type(exc).__name__)
                continue
            log.info("connection lease released after a failed attempt", lease=key)
            return
        log.warning("connection lease left to expire", lease=key)
