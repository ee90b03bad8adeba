"""A Manager stack on real infrastructure: app instance(s) over the real broker and MongoDB-wire server,
the Builder double, API keys, and clean-up of every prefixed queue and exchange."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer
from manager.apikeys import MongoApiKeys, Scope, create_api_key
from manager.app import Overrides, build_app
from manager.ports import utc_now_ms
from manager.settings import ManagerSettings

from shared.amqp import Topology, connect
from tests.integration.manager_builder_double import BuilderDouble
from tests.unit.manager_fakes import Keys, make_keys

T = TypeVar("T")
ALL_SCOPES = [s.value for s in Scope]

CREATE_BODY = {
    "name": "acme-prod",
    "admin_email": "admin@acme.com",
    "salesforce_username": "integration@acme.com",
    "org_id": "00D000000000001EAA",
}


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, deadline: float = 15.0, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy, failing at the deadline."""
    end = time.monotonic() + deadline
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline}s: {what or probe}")
        await asyncio.sleep(0.05)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class ManagerStack:
    amqp_url: str
    mongodb_url: str
    db: Any
    prefix: str
    keys: Keys
    topology: Topology
    builder: BuilderDouble
    clients: list[TestClient[Any, Any]] = field(default_factory=list)
    instance_ids: list[str] = field(default_factory=list)

    def settings(self, instance_id: str = "mgr-a", **extra: Any) -> ManagerSettings:
        values: dict[str, Any] = {
            "amqp_url": self.amqp_url,
            "mongodb_url": self.mongodb_url,
            "mongodb_database": self.db.name,
            "amqp_prefix": self.prefix,
            "instance_id": instance_id,
            "encryption_keys": self.keys.encryption_entry,
            "recipient_private_keys": self.keys.private_entry,
            "rpc_deadline_seconds": 10,
            "sweeper_interval_seconds": 0.5,
            "log_json": False,
        }
        values.update(extra)
        return ManagerSettings(**values)

    async def start_app(self, instance_id: str = "mgr-a", **extra: Any) -> TestClient[Any, Any]:
        """Build and start one Manager instance; it is closed with the stack."""
        app = build_app(self.settings(instance_id, **extra), overrides=Overrides(auth_cache_seconds=0))
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        self.clients.append(client)
        self.instance_ids.append(instance_id)
        return client

    async def api_key(self, *scopes: str) -> str:
        _, plaintext = await create_api_key(
            MongoApiKeys(self.db), name="it", scopes=scopes or ALL_SCOPES, now=utc_now_ms()
        )
        return plaintext

    async def create_active(self, client: TestClient[Any, Any], key: str, name: str) -> dict[str, Any]:
        """POST a connection and wait until the Builder double's reply made it active."""
        r = await client.post("/v1/connections", json={**CREATE_BODY, "name": name}, headers=auth(key))
        assert r.status == 202, await r.text()
        cid = (await r.json())["id"]

        async def active() -> dict[str, Any] | None:
            body = await (await client.get(f"/v1/connections/{cid}", headers=auth(key))).json()
            return body if body["status"] == "active" else None

        return await eventually(active, what=f"connection {cid} active")


@pytest.fixture
async def manager_stack(
    amqp_url: str, mongodb_url: str, mongo_db: Any, amqp_prefix: str
) -> AsyncIterator[ManagerStack]:
    keys = make_keys()
    topology = Topology(prefix=amqp_prefix)
    builder = BuilderDouble(amqp_url, topology, keys.sealer)
    await builder.start()
    stack = ManagerStack(amqp_url, mongodb_url, mongo_db, amqp_prefix, keys, topology, builder)
    try:
        yield stack
    finally:
        for client in stack.clients:
            await client.close()
        await builder.stop()
        conn = await connect(amqp_url, name="manager-test-cleanup")
        try:
            channel = await conn.channel()
            await topology.delete_all(channel, instance_ids=stack.instance_ids)
        finally:
            await conn.close()
