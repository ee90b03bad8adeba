"""The outbox sweeper: a background loop re-publishing commands that were recorded but not published,
or published but unanswered for too long (the Builder's idempotency makes a second copy harmless)."""

from __future__ import annotations

import asyncio
import contextlib

from manager.services import ConnectionService
from shared.logging import get_logger

log = get_logger("manager.sweeper")


class Sweeper:
    """Runs ``ConnectionService.sweep_once`` every ``interval`` seconds until stopped."""

    def __init__(self, service: ConnectionService, *, interval: float) -> None:
        self.service = service
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="manager-sweeper")

    async def stop(self) -> None:
        """Stop the loop, even when a database call swallowed the cancellation.

        The flag is what ends the loop; the cancel only cuts the current round short. A cancel that
        lands while a driver call is finishing can be lost (Python 3.11's ``asyncio.wait_for`` race),
        and the loop then saw a ``ServerSelectionTimeoutError`` instead and went on sweeping for ever
        during shutdown (tests/unit/test_manager_sweeper.py).
        """
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await self.service.sweep_once()
                if sent:
                    log.info("sweeper re-published commands", count=sent)
            except Exception as exc:  # the database or broker is down: try again next round
                if self._stopping.is_set():
                    return
                log.warning("sweep failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
