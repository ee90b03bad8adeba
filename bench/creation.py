"""Create connections through the real flow (Manager → broker → Builder → simulator → Manager) and wait.

Used by the create-pipeline and scaling scenarios, and to seed active connections for the others.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.harness import USERNAME, BenchError, BenchStack


@dataclass
class Batch:
    """The outcome of one batch of creates."""

    ids: list[str]
    first_post_at: float
    last_post_done_at: float
    active: int = 0
    failed: int = 0
    pending: int = 0
    last_active_at: float | None = None
    activation_times: list[float] = field(default_factory=list)
    post: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def completion_s(self) -> float | None:
        """From the first POST leaving the client to the last connection becoming active (server clock)."""
        if self.last_active_at is None:
            return None
        return round(self.last_active_at - self.first_post_at, 3)

    def time_when(self, count: int) -> float | None:
        """Wall-clock time at which ``count`` connections were active."""
        if count <= 0 or count > len(self.activation_times):
            return None
        return self.activation_times[count - 1]


def create(bench: BenchStack, n: int, *, concurrency: int = 16, name_prefix: str = "bench") -> dict[str, Any]:
    """POST ``n`` connections from the load generator process."""
    return bench.loadgen(
        "create",
        "--base",
        bench.url("manager"),
        "--api-key",
        bench.api_key,
        "--org-id",
        bench.org_id,
        "--username",
        USERNAME,
        "--n",
        str(n),
        "--concurrency",
        str(concurrency),
        "--name-prefix",
        name_prefix,
    )


async def wait_for(
    bench: BenchStack, posted: dict[str, Any], *, deadline_s: float, poll_s: float = 2.0
) -> Batch:
    """Poll the Manager's database until every posted connection is active or failed (or the deadline).

    The poll only asks whether anything is still pending (an equality on ``status``, which the Manager's
    outbox index covers); the batch's own counts are read once at the end. An ``_id $in [500 ids]``
    aggregate every 0.5 s cost the MongoDB-wire server (SecantusDB, Python) about half of its CPU during
    a 500-create batch, growing with the collection, and so slowed the very pipeline being measured. The
    measured time comes from the connections' own ``updated_at``, so the poll interval does not bias it.
    """
    ids: list[str] = posted["ids"]
    batch = Batch(ids, posted["first_post_at"], posted["last_post_done_at"], post=posted["post"])
    if posted["failures"]:
        batch.errors["post"] = sum(posted["failures"].values())
    client = bench.database()
    try:
        col = client["sfconnect_manager"]["connections"]
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if not await col.count_documents({"status": "pending"}, limit=1):
                break
            await asyncio.sleep(poll_s)
        counts: dict[str, int] = {}
        async for row in await col.aggregate(
            [{"$match": {"_id": {"$in": ids}}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        ):
            counts[row["_id"]] = row["n"]
        batch.active, batch.failed = counts.get("active", 0), counts.get("failed", 0)
        batch.pending = len(ids) - batch.active - batch.failed
        times: list[float] = []
        async for doc in col.find({"_id": {"$in": ids}, "status": "active"}, {"updated_at": 1}):
            at: datetime = doc["updated_at"]
            times.append(at.timestamp())
        batch.activation_times = sorted(times)
        batch.last_active_at = batch.activation_times[-1] if times else None
        if batch.failed:
            async for doc in col.find({"_id": {"$in": ids}, "status": "failed"}, {"error": 1}).limit(5):
                code = (doc.get("error") or {}).get("code", "unknown")
                batch.errors[code] = batch.errors.get(code, 0) + 1
    finally:
        await client.close()
    return batch


def seed(bench: BenchStack, n: int, *, deadline_s: float = 600.0) -> list[str]:
    """``n`` active connections created through the real flow (simulator latency as currently set)."""
    started = time.monotonic()
    posted = create(bench, n, name_prefix="seed")
    batch = asyncio.run(wait_for(bench, posted, deadline_s=deadline_s))
    print(
        f"  seeded {batch.active}/{n} active connections in {time.monotonic() - started:.1f}s "
        f"({batch.failed} failed, {batch.pending} pending)",
        flush=True,
    )
    if batch.active < max(1, n // 2):
        raise BenchError(
            f"seeding: only {batch.active} of {n} connections became active "
            f"({batch.failed} failed, {batch.pending} pending; errors {batch.errors})"
        )
    return asyncio.run(_active_ids(bench, batch.ids))


async def _active_ids(bench: BenchStack, ids: list[str]) -> list[str]:
    client = bench.database()
    try:
        col = client["sfconnect_manager"]["connections"]
        return [d["_id"] async for d in col.find({"_id": {"$in": ids}, "status": "active"}, {"_id": 1})]
    finally:
        await client.close()


async def all_active_ids(bench: BenchStack) -> list[str]:
    """Every active connection in the Manager's database."""
    client = bench.database()
    try:
        col = client["sfconnect_manager"]["connections"]
        return [d["_id"] async for d in col.find({"status": "active"}, {"_id": 1})]
    finally:
        await client.close()
