"""Org-token refreshes by two Builder replicas (two gateways, two lease holders) on the real MongoDB store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from builder.mongo_store import MongoStore
from builder.salesforce.gateway import SalesforceGateway
from builder.salesforce.jwt import JwtBearer
from builder.salesforce.metadata import MetadataApi
from builder.salesforce.oauth import OAuthClient
from builder.salesforce.rest import RestApi
from builder.salesforce.transport import Transport
from builder.store import OrgAuthorization, OrgStatus

from shared.crypto import Keyring, generate_key

pytestmark = pytest.mark.integration
ORG = "00D000000000001AAA"
SOBJECTS = "/services/data/v68.0/sobjects/"
TOKEN = "/services/oauth2/token"


@dataclass
class FakeOrgServer:
    """describeGlobal accepts only ``valid`` access tokens; the token endpoint runs ``on_refresh``."""

    valid: set[str] = field(default_factory=set)
    refreshes: list[str] = field(default_factory=list)
    on_refresh: Callable[[web.Request, str], Awaitable[web.Response]] | None = None

    async def sobjects(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.valid:
            return web.json_response(
                [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], status=401
            )
        return web.json_response({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": []})

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        refresh_token = str(form.get("refresh_token", ""))
        self.refreshes.append(refresh_token)
        assert self.on_refresh is not None
        return await self.on_refresh(request, refresh_token)


def token_answer(request: web.Request, access: str) -> web.Response:
    return web.json_response(
        {
            "access_token": access, "instance_url": f"{request.scheme}://{request.host}", "id": "",
            "issued_at": "1", "token_type": "Bearer",
        }
    )  # fmt: skip


class GatedStore:
    """A replica's MongoStore whose refresh-lease attempts wait for ``gate`` (to force one interleaving)."""

    def __init__(self, inner: MongoStore, gate: asyncio.Event | None, released: asyncio.Event | None) -> None:
        self.inner, self.gate, self.released = inner, gate, released

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def try_lease(self, key: str, holder: str, seconds: float) -> bool:
        if self.gate is not None and key.startswith("refresh:"):
            await self.gate.wait()
        return await self.inner.try_lease(key, holder, seconds)

    async def release_lease(self, key: str, holder: str) -> None:
        await self.inner.release_lease(key, holder)
        if self.released is not None and key.startswith("refresh:"):
            self.released.set()


@dataclass
class Rig:
    server: FakeOrgServer
    base: str
    stores: list[MongoStore]
    session: aiohttp.ClientSession

    def gateway(self, store: Any, holder: str) -> SalesforceGateway:
        transport = Transport(self.session, timeout=5)
        return SalesforceGateway(
            store=store, oauth=OAuthClient(transport, "cid", "csecret", f"{self.base}/cb"),
            rest=RestApi(transport, "68.0"), metadata=MetadataApi(transport, "68.0"), jwt=JwtBearer(transport),
            holder=holder, lease_seconds=5,
        )  # fmt: skip

    def authorization(self, refresh: str, access: str) -> OrgAuthorization:
        return OrgAuthorization(
            org_id=ORG, user_id="005x", instance_url=self.base, login_url=self.base, is_sandbox=False,
            scopes=["api", "refresh_token"], refresh_token=refresh, access_token=access,
        )  # fmt: skip


@pytest.fixture
async def rig(mongo_db: Any) -> AsyncIterator[Rig]:
    fake = FakeOrgServer()
    app = web.Application()
    app.router.add_get(SOBJECTS, fake.sobjects)
    app.router.add_post(TOKEN, fake.token)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    keyring = Keyring.parse(f"k1:{generate_key()}")
    stores = [MongoStore(mongo_db, keyring), MongoStore(mongo_db, keyring)]  # two replicas, one database
    await stores[0].ensure_indexes()
    try:
        async with aiohttp.ClientSession() as session:
            yield Rig(fake, str(server.make_url("")).rstrip("/"), stores, session)
    finally:
        await server.close()


async def test_a_replica_that_waited_for_the_lease_uses_the_token_the_other_one_refreshed(rig: Rig) -> None:
    await rig.stores[0].save_authorization(rig.authorization("5Aep-old", "00Dold!token"))
    rig.server.valid = {"00Dnew!token"}

    async def slow_refresh(request: web.Request, _refresh_token: str) -> web.Response:
        await asyncio.sleep(0.3)  # B looks at the org while A's refresh is in flight
        return token_answer(request, "00Dnew!token")

    rig.server.on_refresh = slow_refresh
    a_released = asyncio.Event()
    replica_a = rig.gateway(GatedStore(rig.stores[0], None, a_released), "replica-a")
    # B reaches for the lease only once A has refreshed and released it: without the re-check under the
    # lease, B would refresh a second time with a token version it already knows is stale.
    replica_b = rig.gateway(GatedStore(rig.stores[1], a_released, None), "replica-b")
    org_a, org_b = await replica_a.org(ORG), await replica_b.org(ORG)
    results = await asyncio.gather(
        org_a.describe_global(if_modified_since=None), org_b.describe_global(if_modified_since=None)
    )
    assert all(r is not None for r in results)
    assert rig.server.refreshes == ["5Aep-old"], "one refresh for two replicas"
    stored = await rig.stores[0].get_org(ORG)
    assert stored is not None and stored.access_token == "00Dnew!token" and stored.token_version == 2


async def test_a_refresh_refused_for_a_token_replaced_meanwhile_does_not_mark_the_new_authorization(
    rig: Rig,
) -> None:
    await rig.stores[0].save_authorization(rig.authorization("5Aep-old", "00Dold!token"))
    rig.server.valid = {"00Dreauth!token"}

    async def reauthorized_meanwhile(_request: web.Request, refresh_token: str) -> web.Response:
        # An admin authorizes the Builder again (new tokens, new version) while the old refresh is answered.
        await rig.stores[1].save_authorization(rig.authorization("5Aep-reauth", "00Dreauth!token"))
        return web.json_response(
            {"error": "invalid_grant", "error_description": "expired access/refresh token"}, status=400
        )

    rig.server.on_refresh = reauthorized_meanwhile
    org = await rig.gateway(rig.stores[0], "replica-a").org(ORG)
    assert await org.describe_global(if_modified_since=None) is not None
    stored = await rig.stores[0].get_org(ORG)
    assert stored is not None and stored.status is OrgStatus.OK
    assert stored.access_token == "00Dreauth!token" and stored.refresh_token == "5Aep-reauth"


async def test_mark_needs_reauth_applies_only_to_the_token_version_it_names(rig: Rig) -> None:
    store = rig.stores[0]
    first = await store.save_authorization(rig.authorization("5Aep-1", "00D1!a"))
    second = await store.save_authorization(rig.authorization("5Aep-2", "00D2!a"))
    assert second.token_version == first.token_version + 1
    assert not await store.mark_needs_reauth(ORG, "stale", expected_version=first.token_version)
    kept = await store.get_org(ORG)
    assert kept is not None and kept.status is OrgStatus.OK and kept.access_token == "00D2!a"
    assert await store.mark_needs_reauth(ORG, "revoked", expected_version=second.token_version)
    marked = await store.get_org(ORG)
    assert marked is not None and marked.status is OrgStatus.NEEDS_REAUTH and marked.access_token is None
