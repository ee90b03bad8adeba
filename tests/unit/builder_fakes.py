"""Hand-written fakes of the Builder's own ports (Store, SalesforcePort/OrgPort) for unit tests."""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from builder.ports import AppReadback, CreateOutcome, CreateResult, SfUser
from builder.salesforce.apps import AppSpec
from builder.salesforce.errors import OAuthError, OrgNotAuthorized
from builder.salesforce.metadata import DeployStatus
from builder.salesforce.oauth import TokenResponse
from builder.salesforce.rest import DescribeGlobal
from builder.settings import BuilderSettings
from builder.store import (
    ConnectionRecord,
    ObjectsCache,
    OrgAuthorization,
    OrgStatus,
    PendingAuthorization,
    StateRejected,
    org_key,
)

from shared.crypto import generate_key
from shared.sealing import generate_recipient_key


class FakeStore:
    """An in-memory Store with the same observable rules as the MongoDB one."""

    def __init__(self) -> None:
        self.orgs: dict[str, OrgAuthorization] = {}
        self.states: dict[str, tuple[PendingAuthorization, bool]] = {}
        self.connections: dict[str, ConnectionRecord] = {}
        self.leases: dict[str, tuple[str, datetime]] = {}
        self.objects: dict[str, ObjectsCache] = {}
        self.saves = 0

    async def ensure_indexes(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def save_authorization(self, org: OrgAuthorization) -> OrgAuthorization:
        key = org_key(org.org_id)
        old = self.orgs.get(key)
        stored = replace(
            org,
            token_version=(old.token_version + 1) if old else 1,
            app_kind_support=dict(old.app_kind_support) if old else {},
            status=OrgStatus.OK,
        )
        self.orgs[key] = stored
        return copy.deepcopy(stored)

    async def get_org(self, org_id: str) -> OrgAuthorization | None:
        org = self.orgs.get(org_key(org_id))
        return copy.deepcopy(org) if org else None

    async def list_orgs(self) -> list[OrgAuthorization]:
        return [copy.deepcopy(o) for o in self.orgs.values()]

    async def delete_org(self, org_id: str) -> bool:
        return self.orgs.pop(org_key(org_id), None) is not None

    async def save_refreshed_tokens(
        self, org_id: str, *, expected_version: int, access_token: str, refresh_token: str | None,
        instance_url: str,
    ) -> bool:  # fmt: skip
        org = self.orgs.get(org_key(org_id))
        if org is None or org.token_version != expected_version or org.status is not OrgStatus.OK:
            return False
        org.access_token, org.instance_url = access_token, instance_url
        org.refresh_token = refresh_token or org.refresh_token
        org.token_version += 1
        return True

    async def mark_needs_reauth(
        self, org_id: str, reason: str, *, expected_version: int | None = None
    ) -> bool:
        org = self.orgs.get(org_key(org_id))
        if org is None or (expected_version is not None and org.token_version != expected_version):
            return False
        org.status, org.status_reason, org.access_token = OrgStatus.NEEDS_REAUTH, reason, None
        return True

    async def remember_app_kind(self, org_id: str, kind: str, supported: bool) -> None:
        self.orgs[org_key(org_id)].app_kind_support[kind] = supported

    async def save_oauth_state(self, state: str, pending: PendingAuthorization) -> None:
        self.states[state] = (pending, False)

    async def consume_oauth_state(self, state: str, now: datetime) -> PendingAuthorization:
        if state not in self.states:
            raise StateRejected("unknown")
        pending, used = self.states[state]
        if used:
            raise StateRejected("already used")
        self.states[state] = (pending, True)
        if pending.expires_at is None or pending.expires_at <= now:
            raise StateRejected("expired")
        return pending

    async def get_connection(self, connection_id: str) -> ConnectionRecord | None:
        rec = self.connections.get(connection_id)
        return copy.deepcopy(rec) if rec else None

    async def save_connection(self, record: ConnectionRecord) -> None:
        self.saves += 1
        now = datetime.now(UTC)
        record.created_at, record.updated_at = record.created_at or now, now  # like MongoStore
        self.connections[record.connection_id] = copy.deepcopy(record)

    async def try_lease(self, key: str, holder: str, seconds: float) -> bool:
        now = datetime.now(UTC)
        current = self.leases.get(key)
        if current and current[0] != holder and current[1] > now:
            return False
        self.leases[key] = (holder, now + timedelta(seconds=seconds))
        return True

    async def release_lease(self, key: str, holder: str) -> None:
        if self.leases.get(key, ("", None))[0] == holder:
            del self.leases[key]

    async def get_objects_cache(self, org_id: str) -> ObjectsCache | None:
        return self.objects.get(org_key(org_id))

    async def save_objects_cache(self, cache: ObjectsCache) -> None:
        self.objects[org_key(cache.org_id)] = cache


@dataclass
class FakeOrg:
    """One org's state and knobs, implementing OrgPort."""

    authorization: OrgAuthorization
    users: dict[str, SfUser] = field(default_factory=dict)
    permission_sets: dict[str, str] = field(default_factory=dict)
    assignments: set[tuple[str, str]] = field(default_factory=set)
    apps: dict[tuple[str, str], AppReadback] = field(default_factory=dict)
    connected_apps_blocked: bool = False
    eca_disabled: bool = False
    tamper_admin_approved: bool = False
    calls: list[str] = field(default_factory=list)
    deploys: dict[str, AppSpec] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def find_user(self, username: str) -> SfUser | None:
        self.calls.append("find_user")
        return self.users.get(username.lower())

    async def find_permission_set(self, name: str) -> str | None:
        return self.permission_sets.get(name)

    async def ensure_permission_set(self, name: str, label: str) -> str:
        self.calls.append("ensure_permission_set")
        return self.permission_sets.setdefault(name, f"0PS{next(self._ids):012d}")

    async def ensure_assignment(self, user_id: str, permission_set_id: str) -> None:
        self.calls.append("ensure_assignment")
        self.assignments.add((user_id, permission_set_id))

    async def delete_permission_set(self, permission_set_id: str) -> bool:
        self.assignments = {a for a in self.assignments if a[1] != permission_set_id}
        names = [n for n, i in self.permission_sets.items() if i == permission_set_id]
        for n in names:
            del self.permission_sets[n]
        return bool(names)

    def _store(self, kind: str, spec: AppSpec, key: str) -> None:
        self.apps[(kind, spec.full_name)] = AppReadback(
            kind=kind,
            full_name=spec.full_name,
            consumer_key=key,
            certificate=spec.certificate_body,
            admin_approved=not self.tamper_admin_approved,
            # like Salesforce: a ConnectedApp lists permission set names, an ECA policy their ids
            permission_sets=(
                spec.permission_set_name if kind == "connected_app" else spec.permission_set_id,
            ),
        )

    async def create_connected_app(self, spec: AppSpec) -> CreateResult:
        self.calls.append("create_connected_app")
        if self.connected_apps_blocked:
            return CreateResult(CreateOutcome.BLOCKED, "Connected App creation is restricted in this org")
        if ("connected_app", spec.full_name) in self.apps:
            return CreateResult(CreateOutcome.EXISTS, "DUPLICATE_VALUE")
        self._store("connected_app", spec, spec.consumer_key)
        return CreateResult(CreateOutcome.CREATED)

    async def start_eca_deploy(self, spec: AppSpec) -> str:
        self.calls.append("start_eca_deploy")
        deploy_id = f"0Af{next(self._ids):012d}"
        self.deploys[deploy_id] = spec
        return deploy_id

    async def eca_deploy_status(self, deploy_id: str) -> DeployStatus:
        spec = self.deploys[deploy_id]
        if self.eca_disabled:
            return DeployStatus(
                deploy_id, True, "Failed", False, failures=("External Client Apps are not enabled",)
            )
        self._store("external_client_app", spec, f"3MVG{next(self._ids):040d}")
        return DeployStatus(deploy_id, True, "Succeeded", True)

    async def read_app(self, kind: str, full_name: str) -> AppReadback | None:
        self.calls.append(f"read_app:{kind}")
        return self.apps.get((kind, full_name))

    async def delete_app(self, kind: str, full_name: str) -> bool:
        self.calls.append(f"delete_app:{kind}")
        return self.apps.pop((kind, full_name), None) is not None

    async def describe_global(self, *, if_modified_since: datetime | None) -> DescribeGlobal | None:
        self.calls.append("describe_global")
        return DescribeGlobal([{"name": "Account", "label": "Account", "custom": False}], None)


@dataclass
class FakeSalesforce:
    """SalesforcePort over FakeOrgs; JWT answers can be scripted (e.g. a propagation delay)."""

    store: FakeStore
    orgs: dict[str, FakeOrg] = field(default_factory=dict)
    jwt_errors: list[OAuthError] = field(default_factory=list)
    minted: list[dict[str, Any]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    async def org(self, org_id: str) -> FakeOrg:
        from builder.salesforce.session import ensure_usable

        auth = ensure_usable(await self.store.get_org(org_id), org_id)
        fake = self.orgs.get(org_key(org_id))
        if fake is None:
            raise OrgNotAuthorized("no fake org")
        fake.authorization = auth
        return fake

    async def mint_token(
        self, *, token_host: str, consumer_key: str, username: str, audience: str, private_key_pem: str
    ) -> TokenResponse:
        if self.jwt_errors:
            raise self.jwt_errors.pop(0)
        self.minted.append({"host": token_host, "iss": consumer_key, "sub": username, "aud": audience})
        return TokenResponse(
            access_token=f"00D000000000001!fake.token.{len(self.minted)}",
            instance_url=token_host,
            issued_at=str(int(datetime.now(UTC).timestamp() * 1000)),
        )

    async def revoke(self, *, host: str, token: str) -> bool:
        self.revoked.append(token)
        return True


RECIPIENT_PRIVATE, RECIPIENT_PUBLIC = generate_recipient_key("mgr1")


def make_settings(**overrides: Any) -> BuilderSettings:
    """BuilderSettings for tests: fresh at-rest key, the test recipient key, fast retries."""
    values: dict[str, Any] = {
        "encryption_keys": f"k1:{generate_key()}",
        "recipient_public_keys": RECIPIENT_PUBLIC,
        "admin_api_key": "test-admin-key-0123456789",
        "salesforce_client_id": "builder-client-id",
        "salesforce_client_secret": "builder-client-secret",
        "salesforce_callback_url": "http://127.0.0.1:8081/v1/salesforce/callback",
        "propagation_retry_seconds": 1.0,
        "deploy_poll_seconds": 0.01,
    }
    values.update(overrides)
    return BuilderSettings(**values)
