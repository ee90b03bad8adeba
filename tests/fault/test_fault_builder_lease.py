"""A delivery cancelled by a broker connection loss must not leave its connection lease behind.

Found by test_fault_broker (a restart with 100 creates in flight): one of 16 handlers cancelled when the
broker went away kept its ``connection:<id>`` lease, so every redelivery of that create answered
``connection_busy`` until the lease expired (>= 120 s) and the connection stayed pending ~3 minutes.
The cancellation landed while ``try_lease`` was awaited: the database had applied the upsert but the
coroutine never returned, so the lease was never released. Fixed in the Builder (builder/leases.py: a
lease whose taking is cancelled is released, and leases are short and renewed); these tests keep it fixed,
against the real store on a real MongoDB-wire server.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from builder.handlers import Handlers
from builder.mongo_store import MongoStore

from shared.amqp import Delivery
from shared.contracts import CreateConnection
from shared.crypto import Keyring, generate_key
from tests.unit.builder_fakes import RECIPIENT_PUBLIC, make_settings

pytestmark = pytest.mark.fault

CID = "con_019a0000000000000000ab"


class StallingStore:
    """The real MongoStore, except that one chosen call completes in the database and then never returns."""

    def __init__(self, store: MongoStore, stall: str) -> None:
        self.store = store
        self.stall = stall
        self.stalled = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.store, name)
        if name != self.stall:
            return real

        async def stalling(*args: Any, **kwargs: Any) -> Any:
            result = await real(*args, **kwargs)  # done in the database...
            self.stalled.set()
            await asyncio.Event().wait()  # ...but the caller is cancelled before it hears back
            return result

        return stalling


def _command() -> CreateConnection:
    return CreateConnection(
        connection_id=CID,
        org_id="00D000000000001AAA",
        salesforce_username="ops@acme.example.com",
        admin_email="admin@acme.example.com",
        label="lease",
        recipient_key_id=RECIPIENT_PUBLIC.split(":")[0],
    )


def _delivery() -> Delivery:
    now = datetime.now(UTC)
    return Delivery(
        message_id="m1", correlation_id="m1", reply_to=None, request_id=None,
        message_type=CreateConnection.message_type, redelivered=False, attempt=1, first_attempt_at=now,
        timestamp=now, app_id="manager", routing_key="connection.create",
    )  # fmt: skip


async def _cancelled_at(mongo_db: Any, stall: str) -> bool:
    """Cancel a create while ``stall`` is in flight; True when the connection's lease is free afterwards."""
    store = MongoStore(mongo_db, Keyring.parse(f"k1:{generate_key()}"))
    await store.ensure_indexes()
    stalling = StallingStore(store, stall)
    settings = make_settings()
    handlers = Handlers(stalling, None, settings.sealer(), settings, "builder-a")  # type: ignore[arg-type]
    task = asyncio.create_task(handlers.create_connection(_command(), _delivery()))
    await asyncio.wait_for(stalling.stalled.wait(), 10)
    task.cancel()  # what aio-pika does to a running handler when the broker connection drops
    with pytest.raises(asyncio.CancelledError):
        await task
    return await store.try_lease(f"connection:{CID}", "builder-b-redelivery", 60)


async def test_a_create_cancelled_inside_its_lease_releases_the_lease(mongo_db: Any) -> None:
    assert await _cancelled_at(mongo_db, "get_connection")


async def test_a_create_cancelled_while_taking_its_lease_leaves_the_lease_free(mongo_db: Any) -> None:
    assert await _cancelled_at(mongo_db, "try_lease")
