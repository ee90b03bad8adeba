"""An org's API session: the stored access token, refreshed once on INVALID_SESSION_ID, one refresh at a
time per org across every replica (a lease in the store), the rotated refresh token kept in the same write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from builder.metrics import Metrics
from builder.salesforce.errors import (
    AuthorizationRevoked,
    InvalidSession,
    OAuthError,
    OrgNotAuthorized,
    SalesforceApiError,
    SalesforceUnavailable,
)
from builder.salesforce.oauth import OAuthClient
from builder.salesforce.rest import Access
from builder.store import OrgAuthorization, OrgStatus, Store, org_key
from shared.contracts import ErrorCode
from shared.logging import get_logger

T = TypeVar("T")
log = get_logger(__name__)
LEASE_POLL_SECONDS = 0.2


def revoked(org_id: str) -> AuthorizationRevoked:
    return AuthorizationRevoked(
        f"the Builder's authorization in org {org_id} was revoked or expired; "
        "an admin must authorize the Builder again (POST /v1/salesforce/authorize with the admin API key, "
        "then sign in to the org at the URL it returns)"
    )


def ensure_usable(org: OrgAuthorization | None, org_id: str) -> OrgAuthorization:
    """The org's authorization, or the error that says what an admin must do."""
    if org is None:
        raise OrgNotAuthorized(
            f"the Builder is not authorized in org {org_id}; an admin must authorize it first "
            "(POST /v1/salesforce/authorize with the admin API key, then sign in to the org at the URL it "
            "returns)"
        )
    if org.status is OrgStatus.NEEDS_REAUTH:
        raise revoked(org.org_id)
    return org


@dataclass
class OrgSession:
    """Calls an org with its current access token; refreshes at most once per call."""

    org: OrgAuthorization
    store: Store
    oauth: OAuthClient
    holder: str
    lease_seconds: float
    metrics: Metrics | None = None
    local_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def access(self) -> Access | None:
        if not self.org.access_token:
            return None
        return Access(self.org.instance_url, self.org.access_token)

    async def call(self, fn: Callable[[Access], Awaitable[T]]) -> T:
        """Run ``fn`` with the org's access; on INVALID_SESSION_ID refresh once and run it again."""
        access = self.access or await self.refresh()
        try:
            return await fn(access)
        except InvalidSession:
            log.info("org session refused; refreshing", org_id=self.org.org_id)
        access = await self.refresh()
        try:
            return await fn(access)
        except InvalidSession:
            raise SalesforceApiError(
                f"org {self.org.org_id} refused a freshly refreshed session (IP restrictions or a policy "
                "blocking the Builder's app?); check the Builder's app policies, then authorize again",
                code=ErrorCode.AUTHORIZATION_REVOKED.value,
            ) from None

    async def refresh(self) -> Access:
        """Get a newer access token than the one held, refreshing it if no other worker already did."""
        seen = self.org.token_version
        async with self.local_lock:
            deadline = time.monotonic() + self.lease_seconds + 5
            key = f"refresh:{org_key(self.org.org_id)}"
            while True:
                current = ensure_usable(await self.store.get_org(self.org.org_id), self.org.org_id)
                if current.token_version != seen and current.access_token:
                    self.org = current
                    return Access(current.instance_url, current.access_token)
                if await self.store.try_lease(key, self.holder, self.lease_seconds):
                    try:
                        return await self._refresh_holding_lease(seen)
                    finally:
                        await self.store.release_lease(key, self.holder)
                if time.monotonic() > deadline:
                    raise SalesforceUnavailable(
                        f"another Builder replica is still refreshing org {self.org.org_id}'s token"
                    )
                await asyncio.sleep(LEASE_POLL_SECONDS)

    async def _refresh_holding_lease(self, seen: int) -> Access:
        org = ensure_usable(await self.store.get_org(self.org.org_id), self.org.org_id)
        if org.token_version != seen and org.access_token:
            # Another replica refreshed (or an admin re-authorized) between our last look and the lease.
            self.org = org
            return Access(org.instance_url, org.access_token)
        try:
            token = await self.oauth.refresh(token_host=org.instance_url, refresh_token=org.refresh_token)
        except OAuthError as exc:
            self._count("refused")
            if exc.error == "invalid_grant":
                return await self._refresh_refused(org, exc)
            if exc.unrecognised:
                # Not Salesforce's OAuth answer (a proxy or gateway page): nothing says the grant is gone.
                raise SalesforceUnavailable(
                    f"the token endpoint for org {org.org_id} answered HTTP {exc.status} without an OAuth "
                    f"error ({exc.description or 'no detail'}); a proxy in the way?"
                ) from None
            raise SalesforceApiError(
                f"Salesforce refused to refresh the Builder's token for org {org.org_id}: "
                f"{exc.error} ({exc.description}); check SALESFORCE_CLIENT_ID/SECRET",
                code=ErrorCode.AUTHORIZATION_REVOKED.value,
            ) from None
        except Exception:
            self._count("error")
            raise
        stored = await self.store.save_refreshed_tokens(
            org.org_id,
            expected_version=org.token_version,
            access_token=token.access_token,
            refresh_token=token.refresh_token,
            instance_url=token.instance_url,
        )
        if not stored:
            log.warning("refreshed token could not be stored (org changed meanwhile)", org_id=org.org_id)
        self._count("ok")
        self.org = ensure_usable(await self.store.get_org(org.org_id), org.org_id)
        if not stored or not self.org.access_token:
            self.org.access_token = token.access_token
            self.org.instance_url = token.instance_url
        return Access(self.org.instance_url, self.org.access_token)

    async def _refresh_refused(self, org: OrgAuthorization, exc: OAuthError) -> Access:
        """invalid_grant: mark the org for re-authorization unless it was re-authorized meanwhile."""
        reason = f"refresh refused: {exc.description}"
        if await self.store.mark_needs_reauth(org.org_id, reason, expected_version=org.token_version):
            log.warning("org authorization revoked", org_id=org.org_id, reason=exc.description)
            raise revoked(org.org_id) from None
        # The refresh token we used was replaced while Salesforce answered: use the newer authorization.
        log.info("refresh refused for a replaced token; using the newer authorization", org_id=org.org_id)
        current = ensure_usable(await self.store.get_org(org.org_id), org.org_id)
        if not current.access_token:
            raise revoked(org.org_id) from None
        self.org = current
        return Access(current.instance_url, current.access_token)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.org_refreshes.labels(outcome).inc()
