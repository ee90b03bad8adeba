"""The Salesforce port the handlers use (implemented by builder.salesforce.gateway; faked in unit tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from builder.salesforce.apps import AppSpec
from builder.salesforce.metadata import DeployStatus
from builder.salesforce.oauth import TokenResponse
from builder.salesforce.rest import DescribeGlobal
from builder.store import OrgAuthorization


@dataclass(frozen=True)
class SfUser:
    """A Salesforce user found by username."""

    id: str
    username: str
    is_active: bool


class CreateOutcome(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class CreateResult:
    """What createMetadata said about a ConnectedApp."""

    outcome: CreateOutcome
    message: str = ""


@dataclass(frozen=True)
class AppReadback:
    """An app as read back from the org: what the Builder must verify before minting."""

    kind: str
    full_name: str
    consumer_key: str
    certificate: str = field(repr=False)
    admin_approved: bool
    permission_sets: tuple[str, ...] = ()


class OrgPort(Protocol):
    """Calls into one authorized org (the implementation refreshes its session by itself)."""

    @property
    def authorization(self) -> OrgAuthorization: ...

    async def find_user(self, username: str) -> SfUser | None: ...
    async def ensure_permission_set(self, name: str, label: str) -> str: ...
    async def find_permission_set(self, name: str) -> str | None: ...
    async def ensure_assignment(self, user_id: str, permission_set_id: str) -> None: ...
    async def delete_permission_set(self, permission_set_id: str) -> bool: ...
    async def create_connected_app(self, spec: AppSpec) -> CreateResult: ...
    async def start_eca_deploy(self, spec: AppSpec) -> str: ...
    async def eca_deploy_status(self, deploy_id: str) -> DeployStatus: ...
    async def read_app(self, kind: str, full_name: str) -> AppReadback | None: ...
    async def delete_app(self, kind: str, full_name: str) -> bool: ...
    async def describe_global(self, *, if_modified_since: datetime | None) -> DescribeGlobal | None: ...


class SalesforcePort(Protocol):
    """Entry to Salesforce for the handlers."""

    async def org(self, org_id: str) -> OrgPort: ...

    async def mint_token(
        self, *, token_host: str, consumer_key: str, username: str, audience: str, private_key_pem: str
    ) -> TokenResponse: ...

    async def revoke(self, *, host: str, token: str) -> bool: ...
