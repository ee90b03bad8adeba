"""API keys with scopes: ``sfc_<id>_<secret>``, 256 random bits, stored only as a SHA-256 digest.

A high-entropy random key needs no slow password hash: a digest lookup per request is enough, and a
short in-process cache spares the database on hot paths (revocation takes effect within that time).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from manager.domain import CONNECTION_ID_SHAPE
from manager.errors import InsufficientScope, Unauthenticated
from manager.http.schemas import SLUG
from manager.repository import mongo_errors
from shared.errors import InvalidInput, NotFound


class Scope(StrEnum):
    CONNECTIONS_WRITE = "connections:write"
    CONNECTIONS_READ = "connections:read"
    TOKENS_READ = "tokens:read"


KEY_SHAPE = re.compile(r"^sfc_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class ApiKey:
    """What is known about a key (never the key itself)."""

    id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None = None
    integrations: frozenset[str] = frozenset()
    connections: frozenset[str] = frozenset()

    @property
    def bound(self) -> bool:
        """Whether token reads are limited to named integrations and connections."""
        return bool(self.integrations or self.connections)

    def may_read_integration_token(self, name: str) -> bool:
        """An unbound key reads any integration's token; a bound one only its integrations'."""
        return not self.bound or name in self.integrations

    def may_read_connection_token(self, connection_id: str) -> bool:
        """An unbound key reads any connection's token; a bound one only its connections'."""
        return not self.bound or connection_id in self.connections


def digest_of(key: str) -> str:
    """SHA-256 hex digest of the presented key."""
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new ``(key_id, plaintext_key)``; the plaintext is shown once and never stored."""
    key_id = secrets.token_hex(8)
    return key_id, f"sfc_{key_id}_{secrets.token_urlsafe(32)}"


class ApiKeyRepository(Protocol):
    """Where key digests live."""

    async def add(self, key: ApiKey, *, digest: str) -> None: ...
    async def find_by_digest(self, digest: str) -> tuple[ApiKey, str] | None: ...
    async def revoke(self, key_id: str, *, now: datetime) -> bool: ...
    async def all(self) -> list[ApiKey]: ...


def _from_doc(doc: dict[str, Any]) -> ApiKey:
    # records written before bindings existed have neither field: they are unbound
    return ApiKey(
        doc["_id"],
        doc["name"],
        frozenset(doc["scopes"]),
        doc["created_at"],
        doc.get("revoked_at"),
        integrations=frozenset(doc.get("integrations") or ()),
        connections=frozenset(doc.get("connections") or ()),
    )


class MongoApiKeys:
    """Keys in the ``api_keys`` collection (unique index on ``digest``)."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._col = db["api_keys"]

    @mongo_errors
    async def add(self, key: ApiKey, *, digest: str) -> None:
        await self._col.insert_one(
            {
                "_id": key.id,
                "name": key.name,
                "scopes": sorted(key.scopes),
                "digest": digest,
                "created_at": key.created_at,
                "revoked_at": None,
                "integrations": sorted(key.integrations),
                "connections": sorted(key.connections),
            }
        )

    @mongo_errors
    async def find_by_digest(self, digest: str) -> tuple[ApiKey, str] | None:
        doc = await self._col.find_one({"digest": digest})
        return (_from_doc(doc), doc["digest"]) if doc else None

    @mongo_errors
    async def revoke(self, key_id: str, *, now: datetime) -> bool:
        result = await self._col.update_one(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": now}}
        )
        return result.matched_count == 1

    @mongo_errors
    async def all(self) -> list[ApiKey]:
        return [_from_doc(d) async for d in self._col.find({}).sort("created_at", ASCENDING)]


NAME_MAX_CHARS = 64


def valid_key_name(name: str) -> str:
    """The name trimmed, or :class:`InvalidInput` unless it is 1-64 printable characters.

    Control characters (newlines, tabs, ESC sequences), Unicode line separators and invisible format
    characters are refused: names are printed by ``api-keys list`` and logged. The message never echoes
    the name itself.
    """
    trimmed = name.strip(" ")  # only spaces: a trailing newline or tab is refused, not trimmed
    if not 1 <= len(trimmed) <= NAME_MAX_CHARS:
        raise InvalidInput(f"name must be 1-{NAME_MAX_CHARS} printable characters (got {len(trimmed)})")
    if not trimmed.isprintable():
        raise InvalidInput(
            f"name must be 1-{NAME_MAX_CHARS} printable characters: "
            "no control characters, newlines or escape sequences"
        )
    return trimmed


MAX_BINDINGS = 100
_INTEGRATION_NAME = re.compile(SLUG)


def valid_integration_binding(name: str) -> str:
    """``name`` when it is an integration name (a slug), else :class:`InvalidInput` (never echoing it)."""
    if not _INTEGRATION_NAME.fullmatch(name):  # fullmatch: "$" alone lets a trailing newline through
        raise InvalidInput("an integration binding must be a slug (lower-case letters, digits, '-'; 1-63)")
    return name


def valid_connection_binding(connection_id: str) -> str:
    """``connection_id`` when it has a connection id's shape, else :class:`InvalidInput`."""
    if not CONNECTION_ID_SHAPE.fullmatch(connection_id):
        raise InvalidInput(
            "a connection binding must be a connection id as the API gives it out "
            "(con_ and 22 lower-case hex digits)"
        )
    return connection_id


def _bindings(
    scopes: frozenset[str], integrations: Iterable[str], connections: Iterable[str]
) -> tuple[frozenset[str], frozenset[str]]:
    bound_integrations = frozenset(valid_integration_binding(n) for n in integrations)
    bound_connections = frozenset(valid_connection_binding(c) for c in connections)
    if len(bound_integrations) + len(bound_connections) > MAX_BINDINGS:
        raise InvalidInput(f"a key may be bound to at most {MAX_BINDINGS} integrations and connections")
    if (bound_integrations or bound_connections) and Scope.TOKENS_READ.value not in scopes:
        raise InvalidInput("bindings limit token reads: a bound key needs the tokens:read scope")
    return bound_integrations, bound_connections


async def create_api_key(
    repo: ApiKeyRepository,
    *,
    name: str,
    scopes: Iterable[str],
    now: datetime,
    integrations: Iterable[str] = (),
    connections: Iterable[str] = (),
) -> tuple[ApiKey, str]:
    """Store a new key's digest; return the record and the plaintext key (to print once).

    With ``integrations`` and/or ``connections`` the key is bound: it reads only those tokens.
    """
    wanted = frozenset(scopes)
    unknown = wanted - {s.value for s in Scope}
    if not wanted or unknown:
        raise InvalidInput(
            f"scopes must be a non-empty subset of {', '.join(s.value for s in Scope)}"
            + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else "")
        )
    name = valid_key_name(name)
    bound_integrations, bound_connections = _bindings(wanted, integrations, connections)
    key_id, plaintext = generate_key()
    record = ApiKey(key_id, name, wanted, now, integrations=bound_integrations, connections=bound_connections)
    await repo.add(record, digest=digest_of(plaintext))
    return record, plaintext


async def revoke_api_key(repo: ApiKeyRepository, key_id: str, *, now: datetime) -> None:
    """Revoke a key by id (refused when it does not exist or is already revoked)."""
    if not await repo.revoke(key_id, now=now):
        raise NotFound(f"no active API key with id {key_id!r}")


class Authenticator:
    """Checks presented keys and their scopes; caches positive answers for ``cache_seconds``."""

    def __init__(
        self,
        repo: ApiKeyRepository,
        *,
        cache_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repo
        self._ttl = cache_seconds
        self._monotonic = monotonic
        self._cache: dict[str, tuple[ApiKey, float]] = {}

    async def authenticate(self, presented: str | None) -> ApiKey:
        """The key's record, or :class:`Unauthenticated` when missing, malformed, unknown or revoked."""
        if not presented:
            raise Unauthenticated(
                "an API key is required (Authorization: Bearer sfc_... or X-API-Key: sfc_...)"
            )
        if not KEY_SHAPE.fullmatch(presented):
            raise Unauthenticated("the API key is not valid")
        digest = digest_of(presented)
        now = self._monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await self._repo.find_by_digest(digest)
        if found is None or not hmac.compare_digest(found[1], digest) or found[0].revoked_at is not None:
            self._cache.pop(digest, None)
            raise Unauthenticated("the API key is not valid")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (found[0], now + self._ttl)
        return found[0]

    @staticmethod
    def authorize(key: ApiKey, scope: str) -> None:
        """Raise :class:`InsufficientScope` unless ``key`` carries ``scope``."""
        if scope not in key.scopes:
            raise InsufficientScope(f"this API key lacks the {scope} scope")


def authorize_token_read(
    key: ApiKey, *, integration: str | None = None, connection_id: str | None = None
) -> None:
    """Raise :class:`InsufficientScope` when a bound key asks for a token outside its bindings.

    Through the integration endpoint only the integration binding counts (whatever connection the
    integration points to now); through the connection endpoint only the connection binding counts.
    """
    if integration is not None and not key.may_read_integration_token(integration):
        raise InsufficientScope(f"this API key is not bound to integration {integration!r}")
    if connection_id is not None and not key.may_read_connection_token(connection_id):
        raise InsufficientScope(f"this API key is not bound to connection {connection_id!r}")
