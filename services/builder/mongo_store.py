"""The Builder's store on MongoDB (PyMongo's async API); secrets are encrypted with the keyring."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, ExecutionTimeout, PyMongoError

from builder.mongo_connections import aware, connection_from_doc, connection_to_doc
from builder.store import (
    ConnectionRecord,
    ObjectsCache,
    OrgAuthorization,
    OrgStatus,
    PendingAuthorization,
    StateRejected,
    StoreUnavailable,
    org_key,
)
from shared.crypto import Keyring

Doc = dict[str, Any]
P = ParamSpec("P")
T = TypeVar("T")
RETRY_AFTER_SECONDS = 5


def mongo_errors(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn "the database cannot be reached / did not answer in time" into :class:`StoreUnavailable`."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (ConnectionFailure, ExecutionTimeout) as exc:
            raise StoreUnavailable(
                f"MongoDB unavailable ({type(exc).__name__})", retry_after=RETRY_AFTER_SECONDS
            ) from None
        except PyMongoError as exc:
            if exc.timeout:
                raise StoreUnavailable(
                    f"MongoDB timed out ({type(exc).__name__})", retry_after=RETRY_AFTER_SECONDS
                ) from None
            raise

    return wrapper


def _now() -> datetime:
    return datetime.now(UTC)


def _state_id(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


class MongoStore:
    """Collections: orgs, oauth_states (TTL), connections, leases (TTL), objects_cache.

    Every method answers :class:`StoreUnavailable` (retryable) when the database is unreachable or slower
    than the client's timeouts (``MONGODB_TIMEOUT_SECONDS``), never a driver error.
    """

    def __init__(self, db: AsyncDatabase[Doc], keyring: Keyring) -> None:
        self.db = db
        self.keyring = keyring
        self.orgs = db["orgs"]
        self.states = db["oauth_states"]
        self.connections = db["connections"]
        self.leases = db["leases"]
        self.objects = db["objects_cache"]

    @mongo_errors
    async def ensure_indexes(self) -> None:
        """Create every index (idempotent)."""
        await self.states.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl")
        await self.leases.create_index([("until", ASCENDING)], expireAfterSeconds=60, name="ttl")
        await self.orgs.create_index([("status", ASCENDING)], name="status")
        await self.connections.create_index(
            [("org_key", ASCENDING), ("status", ASCENDING)], name="org_status"
        )

    @mongo_errors
    async def ping(self) -> None:
        await self.db.command("ping")

    # -- org authorizations -------------------------------------------------------------------------

    def _enc(self, value: str, record_id: str, name: str) -> str:
        return self.keyring.encrypt(value, record_id=record_id, field=name)

    def _dec(self, value: str | None, record_id: str, name: str) -> str | None:
        return self.keyring.decrypt(value, record_id=record_id, field=name) if value else None

    def _org_from(self, doc: Doc) -> OrgAuthorization:
        key = doc["_id"]
        return OrgAuthorization(
            org_id=doc["org_id"],
            user_id=doc.get("user_id", ""),
            instance_url=doc["instance_url"],
            login_url=doc.get("login_url", ""),
            is_sandbox=bool(doc.get("is_sandbox", False)),
            scopes=list(doc.get("scopes", [])),
            refresh_token=self._dec(doc.get("refresh_token"), key, "refresh_token") or "",
            access_token=self._dec(doc.get("access_token"), key, "access_token"),
            token_version=int(doc.get("token_version", 1)),
            status=OrgStatus(doc.get("status", OrgStatus.OK)),
            status_reason=doc.get("status_reason", ""),
            app_kind_support=dict(doc.get("app_kind_support", {})),
            authorized_at=aware(doc.get("authorized_at")),
            updated_at=aware(doc.get("updated_at")),
        )

    @mongo_errors
    async def save_authorization(self, org: OrgAuthorization) -> OrgAuthorization:
        """Store a fresh authorization (from the OAuth callback), keeping what was learnt about the org."""
        key, now = org_key(org.org_id), _now()
        fields: Doc = {
            "org_id": org.org_id,
            "user_id": org.user_id,
            "instance_url": org.instance_url,
            "login_url": org.login_url,
            "is_sandbox": org.is_sandbox,
            "scopes": org.scopes,
            "refresh_token": self._enc(org.refresh_token, key, "refresh_token"),
            "access_token": self._enc(org.access_token, key, "access_token") if org.access_token else None,
            "status": OrgStatus.OK.value,
            "status_reason": "",
            "authorized_at": now,
            "updated_at": now,
        }
        doc = await self.orgs.find_one_and_update(
            {"_id": key},
            {"$set": fields, "$inc": {"token_version": 1}, "$setOnInsert": {"app_kind_support": {}}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None, "an upsert returns the document"
        return self._org_from(doc)

    @mongo_errors
    async def get_org(self, org_id: str) -> OrgAuthorization | None:
        doc = await self.orgs.find_one({"_id": org_key(org_id)})
        return self._org_from(doc) if doc else None

    @mongo_errors
    async def list_orgs(self) -> list[OrgAuthorization]:
        return [self._org_from(d) async for d in self.orgs.find({}).sort("_id", ASCENDING)]

    @mongo_errors
    async def delete_org(self, org_id: str) -> bool:
        result = await self.orgs.delete_one({"_id": org_key(org_id)})
        await self.objects.delete_one({"_id": org_key(org_id)})
        return result.deleted_count == 1

    @mongo_errors
    async def save_refreshed_tokens(
        self,
        org_id: str,
        *,
        expected_version: int,
        access_token: str,
        refresh_token: str | None,
        instance_url: str,
    ) -> bool:
        """Store a refresh result in one write (a rotated refresh token together with its access token)."""
        key = org_key(org_id)
        fields: Doc = {
            "access_token": self._enc(access_token, key, "access_token"),
            "instance_url": instance_url,
            "updated_at": _now(),
        }
        if refresh_token:
            fields["refresh_token"] = self._enc(refresh_token, key, "refresh_token")
        result = await self.orgs.update_one(
            {"_id": key, "token_version": expected_version, "status": OrgStatus.OK.value},
            {"$set": fields, "$inc": {"token_version": 1}},
        )
        return result.modified_count == 1

    @mongo_errors
    async def mark_needs_reauth(
        self, org_id: str, reason: str, *, expected_version: int | None = None
    ) -> bool:
        """Mark the org for re-authorization; with ``expected_version``, only if its tokens are still those
        (a refresh refused for a token an admin has replaced meanwhile must not mark the new authorization).
        """
        query: Doc = {"_id": org_key(org_id)}
        if expected_version is not None:
            query["token_version"] = expected_version
        result = await self.orgs.update_one(
            query,
            {
                "$set": {
                    "status": OrgStatus.NEEDS_REAUTH.value,
                    "status_reason": reason,
                    "updated_at": _now(),
                },
                "$unset": {"access_token": ""},
            },
        )
        return result.matched_count == 1

    @mongo_errors
    async def remember_app_kind(self, org_id: str, kind: str, supported: bool) -> None:
        await self.orgs.update_one(
            {"_id": org_key(org_id)}, {"$set": {f"app_kind_support.{kind}": supported, "updated_at": _now()}}
        )

    # -- OAuth states -------------------------------------------------------------------------------

    @mongo_errors
    async def save_oauth_state(self, state: str, pending: PendingAuthorization) -> None:
        sid = _state_id(state)
        await self.states.insert_one(
            {
                "_id": sid,
                "code_verifier": self._enc(pending.code_verifier, sid, "code_verifier"),
                "login_url": pending.login_url,
                "is_sandbox": pending.is_sandbox,
                "expires_at": pending.expires_at,
                "used": False,
                "created_at": _now(),
            }
        )

    @mongo_errors
    async def consume_oauth_state(self, state: str, now: datetime) -> PendingAuthorization:
        """Mark a state used (single use) and return what it was stored with; refuses unknown/used/expired."""
        sid = _state_id(state)
        doc = await self.states.find_one_and_update(
            {"_id": sid, "used": False}, {"$set": {"used": True, "used_at": now}}
        )
        if doc is None:
            if await self.states.find_one({"_id": sid}, {"_id": 1}):
                raise StateRejected("this sign-in link was already used; start the authorization again")
            raise StateRejected("unknown sign-in state; start the authorization again from the Builder")
        expires_at = aware(doc.get("expires_at"))
        if expires_at is None or expires_at <= now:
            raise StateRejected(
                "the sign-in took too long and its state expired; start the authorization again"
            )
        return PendingAuthorization(
            code_verifier=self._dec(doc["code_verifier"], sid, "code_verifier") or "",
            login_url=doc.get("login_url", ""),
            is_sandbox=bool(doc.get("is_sandbox", False)),
            expires_at=expires_at,
        )

    # -- connections --------------------------------------------------------------------------------

    @mongo_errors
    async def get_connection(self, connection_id: str) -> ConnectionRecord | None:
        doc = await self.connections.find_one({"_id": connection_id})
        return connection_from_doc(doc, self.keyring) if doc else None

    @mongo_errors
    async def save_connection(self, record: ConnectionRecord) -> None:
        """Write the whole record (callers hold the connection's lease).

        Sets ``created_at`` (first save) and ``updated_at`` on the caller's record itself, so later saves of
        the same record keep the creation time.
        """
        now = _now()
        record.created_at = record.created_at or now
        record.updated_at = now
        cid, doc = record.connection_id, connection_to_doc(record, self.keyring)
        await self.connections.replace_one({"_id": cid}, doc, upsert=True)

    # -- leases -------------------------------------------------------------------------------------

    @mongo_errors
    async def try_lease(self, key: str, holder: str, seconds: float) -> bool:
        """Take (or extend) the lease ``key`` unless another holder has it and it has not expired."""
        now = _now()
        try:
            await self.leases.update_one(
                {"_id": key, "$or": [{"until": {"$lte": now}}, {"holder": holder}]},
                {"$set": {"holder": holder, "until": now + timedelta(seconds=seconds)}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    @mongo_errors
    async def release_lease(self, key: str, holder: str) -> None:
        await self.leases.delete_one({"_id": key, "holder": holder})

    # -- describeGlobal cache -----------------------------------------------------------------------

    @mongo_errors
    async def get_objects_cache(self, org_id: str) -> ObjectsCache | None:
        doc = await self.objects.find_one({"_id": org_key(org_id)})
        if not doc:
            return None
        return ObjectsCache(
            org_id=doc["org_id"],
            sobjects=list(doc.get("sobjects", [])),
            fetched_at=aware(doc["fetched_at"]),
            last_modified=aware(doc.get("last_modified")),
        )

    @mongo_errors
    async def save_objects_cache(self, cache: ObjectsCache) -> None:
        await self.objects.replace_one(
            {"_id": org_key(cache.org_id)},
            {
                "org_id": cache.org_id,
                "sobjects": cache.sobjects,
                "fetched_at": cache.fetched_at,
                "last_modified": cache.last_modified,
            },
            upsert=True,
        )
