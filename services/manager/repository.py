"""Storage ports (Protocols) and their MongoDB implementations (PyMongo ``AsyncMongoClient``).

Connection state changes are compare-and-set on ``version``. Outbox bookkeeping (``command``) and the
refresh lease are separate compare-and-set updates on their own fields so they never race the version.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, ExecutionTimeout, PyMongoError

from manager.documents import connection_from_doc, connection_to_doc
from manager.domain import Connection, ConnectionStatus
from manager.errors import ConcurrentUpdate, ConnectionNotFound, NameTaken, StoreUnavailable

CAS_ATTEMPTS = 20
P = ParamSpec("P")
T = TypeVar("T")


def mongo_errors(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Translate "the database cannot be reached" into :class:`StoreUnavailable` (HTTP 503, retryable)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (ConnectionFailure, ExecutionTimeout) as exc:
            raise StoreUnavailable(f"database unavailable ({type(exc).__name__})", retry_after=5) from None
        except PyMongoError as exc:
            if exc.timeout:
                raise StoreUnavailable(f"database timed out ({type(exc).__name__})", retry_after=5) from None
            raise

    return wrapper


@dataclass(frozen=True)
class Integration:
    """Generated integration code, by name, bound to the connection whose token it uses."""

    name: str
    connection_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RotationItem:
    """One encrypted value found by the key rotation."""

    connection_id: str
    version: int
    ciphertext: str


class ConnectionRepository(Protocol):
    """Where connections live."""

    async def add(
        self,
        connection: Connection,
        *,
        idempotency_ref: str | None = None,
        idempotency_fingerprint: str | None = None,
    ) -> None: ...
    async def get(self, connection_id: str) -> Connection | None: ...
    async def find_by_idempotency_ref(self, ref: str) -> tuple[Connection, str | None] | None:
        """The connection recorded under ``ref`` and the body fingerprint stored with it (None: older record)."""
        ...

    async def page(
        self, *, limit: int, after: str | None, statuses: frozenset[ConnectionStatus] | None = None
    ) -> list[Connection]: ...
    async def save(self, connection: Connection, *, expected_version: int) -> None: ...
    async def mark_published(self, connection_id: str, message_id: str, *, at: datetime) -> bool: ...
    async def due_commands(
        self, *, recorded_before: datetime, published_before: datetime, limit: int
    ) -> list[Connection]: ...
    async def claim_command(
        self, connection_id: str, message_id: str, *, new_message_id: str, now: datetime
    ) -> bool: ...
    async def acquire_refresh_lease(
        self, connection_id: str, *, holder: str, until: datetime, now: datetime
    ) -> bool: ...
    async def release_refresh_lease(self, connection_id: str, *, holder: str) -> None: ...
    async def tokens_to_rotate(
        self, *, active_kid: str, after: str | None, limit: int
    ) -> list[RotationItem]: ...
    async def replace_ciphertext(self, item: RotationItem, new_ciphertext: str) -> bool: ...
    async def count_tokens_to_rotate(self, *, active_kid: str) -> int:
        """How many stored tokens are not under ``active_kid``."""
        ...


async def update_with_cas(
    repo: ConnectionRepository, connection_id: str, change: Callable[[Connection], Connection | None]
) -> tuple[Connection, bool]:
    """Apply ``change`` by compare-and-set, re-reading on conflict; returns (connection, changed)."""
    for _ in range(CAS_ATTEMPTS):
        current = await repo.get(connection_id)
        if current is None:
            raise ConnectionNotFound(f"no connection with id {connection_id!r}")
        updated = change(current)
        if updated is None:
            return current, False
        try:
            await repo.save(updated, expected_version=current.version)
        except ConcurrentUpdate:
            continue
        return updated, True
    raise ConcurrentUpdate(f"connection {connection_id} kept changing; gave up after {CAS_ATTEMPTS} tries")


class IntegrationRepository(Protocol):
    """Which connection each integration uses."""

    async def associate(self, name: str, connection_id: str, *, now: datetime) -> Integration: ...
    async def get(self, name: str) -> Integration | None: ...


class MongoConnections:
    """Connections in the ``connections`` collection; ``_id`` is the connection id."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._col = db["connections"]

    @mongo_errors
    async def add(
        self,
        connection: Connection,
        *,
        idempotency_ref: str | None = None,
        idempotency_fingerprint: str | None = None,
    ) -> None:
        doc = connection_to_doc(connection)
        if idempotency_ref is not None:  # written once; later saves ($set of the aggregate) keep them
            doc["idempotency_ref"] = idempotency_ref
            doc["idempotency_fingerprint"] = idempotency_fingerprint
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            raise NameTaken(f"a connection named {connection.name!r} already exists") from None

    @mongo_errors
    async def get(self, connection_id: str) -> Connection | None:
        doc = await self._col.find_one({"_id": connection_id})
        return connection_from_doc(doc) if doc else None

    @mongo_errors
    async def find_by_idempotency_ref(self, ref: str) -> tuple[Connection, str | None] | None:
        doc = await self._col.find_one({"idempotency_ref": ref})
        return (connection_from_doc(doc), doc.get("idempotency_fingerprint")) if doc else None

    @mongo_errors
    async def page(
        self, *, limit: int, after: str | None, statuses: frozenset[ConnectionStatus] | None = None
    ) -> list[Connection]:
        query: dict[str, Any] = {"_id": {"$gt": after}} if after else {}
        if statuses is not None:  # served by the by_status index (status, then _id: the sort order)
            query["status"] = {"$in": sorted(s.value for s in statuses)}
        cursor = self._col.find(query).sort("_id", ASCENDING).limit(limit)
        return [connection_from_doc(doc) async for doc in cursor]

    @mongo_errors
    async def save(self, connection: Connection, *, expected_version: int) -> None:
        doc = connection_to_doc(connection)
        doc.pop("_id")
        update: dict[str, Any] = {"$set": doc}
        if connection.status is ConnectionStatus.DELETED:
            update["$unset"] = {"name_key": ""}  # a deleted connection gives its name back
        try:
            result = await self._col.update_one({"_id": connection.id, "version": expected_version}, update)
        except DuplicateKeyError:
            raise NameTaken(f"a connection named {connection.name!r} already exists") from None
        if result.matched_count != 1:
            raise ConcurrentUpdate(f"connection {connection.id} changed since version {expected_version}")

    @mongo_errors
    async def mark_published(self, connection_id: str, message_id: str, *, at: datetime) -> bool:
        result = await self._col.update_one(
            {"_id": connection_id, "command.message_id": message_id},
            {"$set": {"command.published_at": at}, "$inc": {"command.publishes": 1}},
        )
        return result.matched_count == 1

    @mongo_errors
    async def due_commands(
        self, *, recorded_before: datetime, published_before: datetime, limit: int
    ) -> list[Connection]:
        query = {
            "status": {"$in": [ConnectionStatus.PENDING.value, ConnectionStatus.DELETING.value]},
            "command.message_id": {"$exists": True},
            "$or": [
                {"command.published_at": None, "command.recorded_at": {"$lt": recorded_before}},
                {"command.published_at": {"$lt": published_before}},
            ],
        }
        cursor = self._col.find(query).sort("_id", ASCENDING).limit(limit)
        return [connection_from_doc(doc) async for doc in cursor]

    @mongo_errors
    async def claim_command(
        self, connection_id: str, message_id: str, *, new_message_id: str, now: datetime
    ) -> bool:
        # Every publish needs its own message id; the compare on the old one makes one sweeper win.
        result = await self._col.update_one(
            {"_id": connection_id, "command.message_id": message_id},
            {
                "$set": {
                    "command.message_id": new_message_id,
                    "command.recorded_at": now,
                    "command.published_at": None,
                },
                "$inc": {"command.attempts": 1},
            },
        )
        return result.matched_count == 1

    @mongo_errors
    async def acquire_refresh_lease(
        self, connection_id: str, *, holder: str, until: datetime, now: datetime
    ) -> bool:
        doc = await self._col.find_one_and_update(
            {
                "_id": connection_id,
                "status": ConnectionStatus.ACTIVE.value,
                "$or": [{"refresh_lease": None}, {"refresh_lease.until": {"$lt": now}}],
            },
            {"$set": {"refresh_lease": {"holder": holder, "until": until, "since": now}}},
            projection={"_id": 1},
            return_document=ReturnDocument.AFTER,
        )
        return doc is not None

    @mongo_errors
    async def release_refresh_lease(self, connection_id: str, *, holder: str) -> None:
        await self._col.update_one(
            {"_id": connection_id, "refresh_lease.holder": holder}, {"$set": {"refresh_lease": None}}
        )

    @staticmethod
    def _not_under(active_kid: str) -> dict[str, Any]:
        return {
            "token.ciphertext": {"$exists": True, "$ne": None, "$not": {"$regex": f"^v1\\.{active_kid}\\."}}
        }

    @mongo_errors
    async def count_tokens_to_rotate(self, *, active_kid: str) -> int:
        return await self._col.count_documents(self._not_under(active_kid))

    @mongo_errors
    async def tokens_to_rotate(self, *, active_kid: str, after: str | None, limit: int) -> list[RotationItem]:
        query = self._not_under(active_kid)
        if after:
            query["_id"] = {"$gt": after}
        cursor = (
            self._col.find(query, projection={"_id": 1, "version": 1, "token.ciphertext": 1})
            .sort("_id", ASCENDING)
            .limit(limit)
        )
        return [RotationItem(d["_id"], d["version"], d["token"]["ciphertext"]) async for d in cursor]

    @mongo_errors
    async def replace_ciphertext(self, item: RotationItem, new_ciphertext: str) -> bool:
        result = await self._col.update_one(
            {"_id": item.connection_id, "version": item.version, "token.ciphertext": item.ciphertext},
            {"$set": {"token.ciphertext": new_ciphertext}, "$inc": {"version": 1}},
        )
        return result.matched_count == 1


class MongoIntegrations:
    """Integrations in the ``integrations`` collection; ``_id`` is the integration name."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._col = db["integrations"]

    @mongo_errors
    async def associate(self, name: str, connection_id: str, *, now: datetime) -> Integration:
        doc = await self._col.find_one_and_update(
            {"_id": name},
            {
                "$set": {"connection_id": connection_id, "updated_at": now},
                "$setOnInsert": {"created_at": now},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None  # upsert with AFTER always returns the document
        return Integration(doc["_id"], doc["connection_id"], doc["created_at"], doc["updated_at"])

    @mongo_errors
    async def get(self, name: str) -> Integration | None:
        doc = await self._col.find_one({"_id": name})
        if doc is None:
            return None
        return Integration(doc["_id"], doc["connection_id"], doc["created_at"], doc["updated_at"])


@mongo_errors
async def ensure_indexes(db: AsyncDatabase[Any]) -> None:
    """Create every index the Manager relies on (idempotent)."""
    connections = db["connections"]
    await connections.create_index(
        "name_key", unique=True, partialFilterExpression={"name_key": {"$exists": True}}, name="unique_name"
    )
    await connections.create_index(
        [("status", ASCENDING), ("command.published_at", ASCENDING)], name="outbox"
    )
    await connections.create_index([("status", ASCENDING), ("_id", ASCENDING)], name="by_status")
    await connections.create_index(
        "idempotency_ref", partialFilterExpression={"idempotency_ref": {"$exists": True}}, name="idempotency"
    )
    await db["integrations"].create_index("connection_id", name="by_connection")
    await db["api_keys"].create_index("digest", unique=True, name="unique_digest")
    await db["idempotency_keys"].create_index("created_at", expireAfterSeconds=24 * 3600, name="expiry")


@mongo_errors
async def ping(db: AsyncDatabase[Any]) -> None:
    """Raise :class:`StoreUnavailable` unless the server answers."""
    await db.command("ping")
