"""The Salesforce port implemented over REST, the Metadata API, OAuth and JWT bearer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from builder.metrics import Metrics
from builder.ports import AppReadback, CreateOutcome, CreateResult, SfUser
from builder.salesforce import apps
from builder.salesforce.errors import SalesforceApiError
from builder.salesforce.jwt import JwtBearer
from builder.salesforce.metadata import DeployStatus, MetadataApi, as_list
from builder.salesforce.oauth import OAuthClient, TokenResponse
from builder.salesforce.rest import Access, DescribeGlobal, RestApi, soql_select
from builder.salesforce.session import OrgSession, ensure_usable
from builder.store import OrgAuthorization, Store, org_key

_DUPLICATE_CODES = ("DUPLICATE_VALUE", "DUPLICATE_DEVELOPER_NAME", "DUPLICATE_USERNAME")


def _is_true(value: Any) -> bool:
    return str(value).strip().lower() == "true"


@dataclass
class OrgClient:
    """One org's calls, each through the org session (refresh once on INVALID_SESSION_ID)."""

    session: OrgSession
    rest: RestApi
    metadata: MetadataApi
    api_version: str

    @property
    def authorization(self) -> OrgAuthorization:
        return self.session.org

    async def find_user(self, username: str) -> SfUser | None:
        soql = soql_select("Id, Username, IsActive", "User", Username=username)
        rows = await self.session.call(lambda a: self.rest.query(a, soql))
        for row in rows:
            if str(row.get("Username", "")).lower() == username.lower():
                return SfUser(str(row["Id"]), str(row["Username"]), bool(row.get("IsActive")))
        return None

    async def find_permission_set(self, name: str) -> str | None:
        soql = soql_select("Id, Name", "PermissionSet", Name=name)
        rows = await self.session.call(lambda a: self.rest.query(a, soql))
        return str(rows[0]["Id"]) if rows else None

    async def ensure_permission_set(self, name: str, label: str) -> str:
        if existing := await self.find_permission_set(name):
            return existing
        fields = {
            "Name": name,
            "Label": label,
            "Description": "Pre-authorizes the user of one sfconnect connection for its app.",
        }
        try:
            return await self.session.call(lambda a: self.rest.create(a, "PermissionSet", fields))
        except SalesforceApiError as exc:
            if exc.sf_code in _DUPLICATE_CODES and (found := await self.find_permission_set(name)):
                return found
            raise

    async def ensure_assignment(self, user_id: str, permission_set_id: str) -> None:
        soql = soql_select(
            "Id", "PermissionSetAssignment", AssigneeId=user_id, PermissionSetId=permission_set_id
        )
        if await self.session.call(lambda a: self.rest.query(a, soql)):
            return
        fields = {"AssigneeId": user_id, "PermissionSetId": permission_set_id}
        try:
            await self.session.call(lambda a: self.rest.create(a, "PermissionSetAssignment", fields))
        except SalesforceApiError as exc:
            if exc.sf_code not in _DUPLICATE_CODES:
                raise

    async def delete_permission_set(self, permission_set_id: str) -> bool:
        soql = soql_select("Id", "PermissionSetAssignment", PermissionSetId=permission_set_id)
        rows = await self.session.call(lambda a: self.rest.query(a, soql))
        for rid in [str(row["Id"]) for row in rows]:
            await self._delete_record("PermissionSetAssignment", rid)
        return await self.session.call(lambda a: self.rest.delete(a, "PermissionSet", permission_set_id))

    async def _delete_record(self, sobject: str, record_id: str) -> bool:
        return await self.session.call(lambda a: self.rest.delete(a, sobject, record_id))

    async def create_connected_app(self, spec: apps.AppSpec) -> CreateResult:
        record = apps.connected_app_record(spec)
        results = await self.session.call(
            lambda a: self.metadata.create(a, apps.CONNECTED_APP_TYPE, [record])
        )
        if not results:
            raise SalesforceApiError("createMetadata answered with no result for the connected app")
        result = results[0]
        if result.success:
            return CreateResult(CreateOutcome.CREATED)
        detail = result.describe()
        if apps.connected_app_blocked(detail):
            return CreateResult(CreateOutcome.BLOCKED, detail)
        if (
            any(e.status_code in _DUPLICATE_CODES for e in result.errors)
            and "consumer key" not in detail.lower()
        ):
            return CreateResult(CreateOutcome.EXISTS, detail)
        codes = {e.status_code for e in result.errors}
        raise SalesforceApiError(
            f"Salesforce refused to create connected app {spec.full_name}: {detail}",
            sf_code=next(iter(codes), ""),
        )

    async def start_eca_deploy(self, spec: apps.AppSpec) -> str:
        payload = apps.eca_zip(spec, self.api_version)
        return await self.session.call(lambda a: self.metadata.deploy(a, payload))

    async def eca_deploy_status(self, deploy_id: str) -> DeployStatus:
        return await self.session.call(lambda a: self.metadata.check_deploy_status(a, deploy_id))

    async def read_app(self, kind: str, full_name: str) -> AppReadback | None:
        if kind == "connected_app":
            return await self.session.call(lambda a: self._read_connected_app(a, full_name))
        return await self.session.call(lambda a: self._read_eca(a, full_name))

    async def _read_connected_app(self, access: Access, full_name: str) -> AppReadback | None:
        records = await self.metadata.read(access, apps.CONNECTED_APP_TYPE, [full_name])
        if not records:
            return None
        rec = records[0]
        raw = rec.get("oauthConfig")
        oauth: dict[str, Any] = raw if isinstance(raw, dict) else {}
        return AppReadback(
            kind="connected_app",
            full_name=full_name,
            consumer_key=str(oauth.get("consumerKey") or ""),
            certificate=str(oauth.get("certificate") or ""),
            admin_approved=_is_true(oauth.get("isAdminApproved")),
            permission_sets=tuple(str(p) for p in as_list(rec.get("permissionSetName"))),
        )

    async def _read_eca(self, access: Access, full_name: str) -> AppReadback | None:
        names = apps.eca_names(full_name)
        if not await self.metadata.read(access, apps.ECA_TYPE, [full_name]):
            return None
        glob = await self.metadata.read(access, apps.ECA_GLOBAL_TYPE, [names[apps.ECA_GLOBAL_TYPE]])
        policy = await self.metadata.read(access, apps.ECA_POLICY_TYPE, [names[apps.ECA_POLICY_TYPE]])
        g = glob[0] if glob else {}
        p = policy[0] if policy else {}
        consumer_key = str(g.get("consumerKey") or "") or await self._eca_consumer_key(access, full_name)
        permission_sets = tuple(
            s.strip() for s in str(p.get("commaSeparatedPermissionSet") or "").split(",") if s.strip()
        )
        return AppReadback(
            kind="external_client_app",
            full_name=full_name,
            consumer_key=consumer_key,
            certificate=str(g.get("certificate") or ""),
            admin_approved=str(p.get("permittedUsersPolicyType") or "") == apps.ADMIN_APPROVED,
            permission_sets=permission_sets,
        )

    async def _eca_consumer_key(self, access: Access, full_name: str) -> str:
        """The consumer key from Connect REST ``apps/oauth/credentials`` when readMetadata omits it."""
        listing = await self.rest.get(
            access, f"apps/oauth/credentials/{full_name}", operation="eca_credentials"
        )
        consumers = listing.get("consumers") if isinstance(listing, dict) else listing
        for consumer in as_list(consumers):
            if isinstance(consumer, dict) and consumer.get("id"):
                detail = await self.rest.get(
                    access,
                    f"apps/oauth/credentials/{full_name}/{consumer['id']}",
                    operation="eca_credentials",
                )
                if isinstance(detail, dict) and detail.get("key"):
                    return str(detail["key"])
        return ""

    async def delete_app(self, kind: str, full_name: str) -> bool:
        type_name = apps.CONNECTED_APP_TYPE if kind == "connected_app" else apps.ECA_TYPE
        results = await self.session.call(lambda a: self.metadata.delete(a, type_name, [full_name]))
        if not results or results[0].success:
            return bool(results)
        detail = results[0].describe()
        gone = any(e.status_code in ("INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND") for e in results[0].errors)
        if gone or any(p in detail.lower() for p in ("not found", "no such", "does not exist")):
            return False
        raise SalesforceApiError(f"Salesforce refused to delete {kind} {full_name}: {detail}")

    async def describe_global(self, *, if_modified_since: datetime | None) -> DescribeGlobal | None:
        return await self.session.call(
            lambda a: self.rest.describe_global(a, if_modified_since=if_modified_since)
        )


@dataclass
class SalesforceGateway:
    """Builds org clients from stored authorizations; mints and revokes tokens."""

    store: Store
    oauth: OAuthClient
    rest: RestApi
    metadata: MetadataApi
    jwt: JwtBearer
    holder: str
    lease_seconds: float
    metrics: Metrics | None = None
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def org(self, org_id: str) -> OrgClient:
        org = ensure_usable(await self.store.get_org(org_id), org_id)
        lock = self._locks.setdefault(org_key(org.org_id), asyncio.Lock())
        session = OrgSession(org, self.store, self.oauth, self.holder, self.lease_seconds, self.metrics, lock)
        return OrgClient(session, self.rest, self.metadata, self.rest.api_version)

    async def mint_token(
        self, *, token_host: str, consumer_key: str, username: str, audience: str, private_key_pem: str
    ) -> TokenResponse:
        return await self.jwt.mint(
            token_host=token_host,
            consumer_key=consumer_key,
            username=username,
            audience=audience,
            private_key_pem=private_key_pem,
        )

    async def revoke(self, *, host: str, token: str) -> bool:
        return await self.oauth.revoke(host=host, token=token)
