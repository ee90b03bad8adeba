"""``Idempotency-Key`` support: the same key and body get the same response; another body is refused.

A key is scoped to the API key that used it and remembered for a day (TTL index). A request that
crashed half-way leaves an ``in_progress`` record. A retry first asks ``recover`` whether the crashed
request's work is already done (for a create: a connection recorded under the key) and replays that;
otherwise it gets ``idempotency_key_in_progress`` until the record is ``stale_after`` old, and then runs
the action itself. Only a retry with the same body may take a stale record over, and ``recover`` must
refuse (``IdempotencyKeyReused``) work recorded for another body: the record may have expired or been
claimed afresh since that work was done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from manager.errors import IdempotencyKeyInProgress, IdempotencyKeyReused
from manager.repository import mongo_errors
from shared.errors import InvalidInput

KEY_SHAPE = re.compile(r"^[\x21-\x7e]{1,255}$")
IN_PROGRESS_RETRY_AFTER = 5.0  # seconds: a live request is done by then; a dead one's claim goes stale later


@dataclass(frozen=True)
class StoredResponse:
    """A response remembered under an idempotency key."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class IdempotencyRecord:
    fingerprint: str
    response: StoredResponse | None


class IdempotencyRepository(Protocol):
    """Where idempotency records live."""

    async def begin(
        self, key: str, *, fingerprint: str, now: datetime, stale_before: datetime
    ) -> IdempotencyRecord | None:
        """Claim ``key`` (returns None) or return the record someone else holds."""
        ...

    async def complete(self, key: str, response: StoredResponse) -> None: ...
    async def abandon(self, key: str) -> None: ...


class MongoIdempotencyKeys:
    """Records in the ``idempotency_keys`` collection; ``_id`` is a digest of (API key id, key)."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._col = db["idempotency_keys"]

    @mongo_errors
    async def begin(
        self, key: str, *, fingerprint: str, now: datetime, stale_before: datetime
    ) -> IdempotencyRecord | None:
        try:
            await self._col.insert_one(
                {"_id": key, "fingerprint": fingerprint, "state": "in_progress", "created_at": now}
            )
            return None
        except DuplicateKeyError:
            pass
        taken = await self._col.update_one(
            # only the same body takes a stale claim over: another body is refused below (422)
            {
                "_id": key,
                "state": "in_progress",
                "fingerprint": fingerprint,
                "created_at": {"$lt": stale_before},
            },
            {"$set": {"created_at": now}},
        )
        if taken.matched_count == 1:
            return None
        doc = await self._col.find_one({"_id": key})
        if doc is None:  # expired between the two calls: try once more from scratch
            return await self.begin(key, fingerprint=fingerprint, now=now, stale_before=stale_before)
        response = StoredResponse(doc["status"], doc["body"]) if doc["state"] == "done" else None
        return IdempotencyRecord(doc["fingerprint"], response)

    @mongo_errors
    async def complete(self, key: str, response: StoredResponse) -> None:
        await self._col.update_one(
            {"_id": key}, {"$set": {"state": "done", "status": response.status, "body": response.body}}
        )

    @mongo_errors
    async def abandon(self, key: str) -> None:
        await self._col.delete_one({"_id": key, "state": "in_progress"})


def fingerprint(body: dict[str, Any]) -> str:
    """A digest of the validated request body (key order does not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def scoped_key(api_key_id: str, idempotency_key: str) -> str:
    """The stored id: the client's key scoped to the API key that sent it."""
    if not KEY_SHAPE.fullmatch(idempotency_key):
        raise InvalidInput("Idempotency-Key must be 1-255 visible ASCII characters")
    return hashlib.sha256(f"{api_key_id}\0{idempotency_key}".encode()).hexdigest()


async def run_once(
    repo: IdempotencyRepository,
    key: str,
    *,
    body_fingerprint: str,
    now: datetime,
    stale_after: timedelta,
    action: Callable[[], Awaitable[StoredResponse]],
    recover: Callable[[], Awaitable[StoredResponse | None]] | None = None,
) -> StoredResponse:
    """Run ``action`` once per key: replay its response for the same body, refuse another body."""
    existing = await repo.begin(key, fingerprint=body_fingerprint, now=now, stale_before=now - stale_after)
    if existing is not None:
        if existing.fingerprint != body_fingerprint:
            raise IdempotencyKeyReused("this Idempotency-Key was already used with a different request body")
        if existing.response is not None:
            return existing.response
        recovered = await recover() if recover is not None else None
        if recovered is None:
            raise IdempotencyKeyInProgress(
                "a request with this Idempotency-Key is still being processed (or died before it recorded "
                f"anything: it is retried after {stale_after.total_seconds():g}s)",
                retry_after=min(IN_PROGRESS_RETRY_AFTER, stale_after.total_seconds()),
            )
        await repo.complete(key, recovered)
        return recovered
    try:
        # a claim taken over from a crashed request (or made after its record expired): its work may be done
        recovered = await recover() if recover is not None else None
        response = recovered if recovered is not None else await action()
    except BaseException:  # recover refused another body's work, or the action failed: free the key
        with contextlib.suppress(Exception):  # the original error matters more than a failed clean-up
            await repo.abandon(key)
        raise
    await repo.complete(key, response)
    return response
