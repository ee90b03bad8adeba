"""What the Builder remembers: org authorizations, OAuth states, connections, leases, object caches.

Records hold secrets decrypted (hidden from ``repr``); the store implementation encrypts them with the
keyring before they reach the database, bound by associated data to their record and field. The MongoDB
implementation is :class:`builder.mongo_store.MongoStore`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from shared.errors import PermanentError, RetryableError


class OrgStatus(StrEnum):
    OK = "ok"
    NEEDS_REAUTH = "needs_reauth"


class ConnectionStatus(StrEnum):
    PROVISIONING = "provisioning"
    APP_REQUESTED = "app_requested"
    APP_CREATED = "app_created"
    APP_VERIFIED = "app_verified"
    ACTIVE = "active"
    DELETED = "deleted"


class StateRejected(PermanentError):
    """An OAuth callback whose ``state`` is unknown, already used or expired."""

    code = "invalid_state"


class StoreUnavailable(RetryableError):
    """The database cannot be reached or does not answer in time (HTTP 503, commands retried)."""

    code = "database_unavailable"


@dataclass
class OrgAuthorization:
    """One org the Builder is authorized in, with its tokens (decrypted, never in repr)."""

    org_id: str
    user_id: str
    instance_url: str
    login_url: str
    is_sandbox: bool
    scopes: list[str]
    refresh_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    token_version: int = 1
    status: OrgStatus = OrgStatus.OK
    status_reason: str = ""
    app_kind_support: dict[str, bool] = field(default_factory=dict)
    authorized_at: datetime | None = None
    updated_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        """The authorization without secrets (HTTP API view)."""
        return {
            "org_id": self.org_id,
            "user_id": self.user_id,
            "instance_url": self.instance_url,
            "login_url": self.login_url,
            "is_sandbox": self.is_sandbox,
            "scopes": self.scopes,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "app_kind_support": self.app_kind_support,
            "authorized_at": self.authorized_at.isoformat() if self.authorized_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


@dataclass(frozen=True)
class PendingAuthorization:
    """What was stored with an OAuth ``state`` when the redirect was issued."""

    code_verifier: str = field(repr=False)
    login_url: str = ""
    is_sandbox: bool = False
    expires_at: datetime | None = None


@dataclass(frozen=True)
class IssuedReply:
    """The sealed token already sent for a connection, replayed on redelivery (never a clear token)."""

    key_id: str
    sealed_token: str
    issued_at: datetime
    instance_url: str


@dataclass
class ConnectionRecord:
    """One connection's app in its org and the credential that signs its JWTs."""

    connection_id: str
    org_id: str
    username: str
    admin_email: str
    label: str
    requested_kind: str
    full_name: str
    permission_set_name: str
    certificate_pem: str
    private_key_pem: str | None = field(default=None, repr=False)
    consumer_key: str = ""
    user_id: str = ""
    app_kind: str | None = None
    permission_set_id: str | None = None
    deploy_id: str | None = None
    status: ConnectionStatus = ConnectionStatus.PROVISIONING
    app_created_at: datetime | None = None
    instance_url: str = ""
    audience: str = ""
    last_access_token: str | None = field(default=None, repr=False)
    reply: IssuedReply | None = None
    app_existed: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ObjectsCache:
    """The last describeGlobal answer for an org."""

    org_id: str
    sobjects: list[dict[str, Any]]
    fetched_at: datetime
    last_modified: datetime | None


class Store(Protocol):
    """The Builder's persistence port."""

    async def ensure_indexes(self) -> None: ...
    async def ping(self) -> None: ...

    async def save_authorization(self, org: OrgAuthorization) -> OrgAuthorization: ...
    async def get_org(self, org_id: str) -> OrgAuthorization | None: ...
    async def list_orgs(self) -> list[OrgAuthorization]: ...
    async def delete_org(self, org_id: str) -> bool: ...
    async def save_refreshed_tokens(
        self,
        org_id: str,
        *,
        expected_version: int,
        access_token: str,
        refresh_token: str | None,
        instance_url: str,
    ) -> bool: ...
    async def mark_needs_reauth(
        self, org_id: str, reason: str, *, expected_version: int | None = None
    ) -> bool: ...
    async def remember_app_kind(self, org_id: str, kind: str, supported: bool) -> None: ...

    async def save_oauth_state(self, state: str, pending: PendingAuthorization) -> None: ...
    async def consume_oauth_state(self, state: str, now: datetime) -> PendingAuthorization: ...

    async def get_connection(self, connection_id: str) -> ConnectionRecord | None: ...
    async def save_connection(self, record: ConnectionRecord) -> None: ...

    async def try_lease(self, key: str, holder: str, seconds: float) -> bool: ...
    async def release_lease(self, key: str, holder: str) -> None: ...

    async def get_objects_cache(self, org_id: str) -> ObjectsCache | None: ...
    async def save_objects_cache(self, cache: ObjectsCache) -> None: ...


def org_key(org_id: str) -> str:
    """Orgs are found by the first 15 characters of their id (15- and 18-character forms match)."""
    return org_id[:15]
