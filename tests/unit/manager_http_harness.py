"""Running the real Manager aiohttp app over fakes of its ports (no broker, no database)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from manager.apikeys import Scope, create_api_key
from manager.app import Overrides, build_app
from manager.http.state import COMPONENTS, Check
from manager.settings import ManagerSettings

from tests.unit.manager_fakes import (
    FakeApiKeys,
    FakeClock,
    FakeConnections,
    FakeIdempotency,
    FakeIntegrations,
    FakePublisher,
    FakeRpc,
    Keys,
    Outage,
    make_keys,
)
from tests.unit.manager_world import created_reply, refreshed_reply

ALL_SCOPES = [s.value for s in Scope]


def manager_settings(keys: Keys, **extra: Any) -> ManagerSettings:
    values: dict[str, Any] = {
        "encryption_keys": keys.encryption_entry,
        "recipient_private_keys": keys.private_entry,
        "instance_id": "mgr-test",
        "amqp_prefix": "unit.",
        "log_json": False,
    }
    values.update(extra)
    return ManagerSettings(**values)


@dataclasses.dataclass
class Harness:
    client: TestClient[Any, Any]
    outage: Outage
    repo: FakeConnections
    publisher: FakePublisher
    rpc: FakeRpc
    api_keys: FakeApiKeys
    keys: Keys
    clock: FakeClock
    app: Any

    async def key(self, *scopes: str, name: str = "test") -> str:
        _, plaintext = await create_api_key(
            self.api_keys, name=name, scopes=scopes or ALL_SCOPES, now=self.clock()
        )
        return plaintext

    async def activate(self, connection_id: str) -> None:
        reply = created_reply(connection_id, self.keys.sealer, self.clock())
        await self.app[COMPONENTS].connections.record_reply(reply)


@contextlib.asynccontextmanager
async def harness(*, checks: dict[str, Check] | None = None, **settings: Any) -> AsyncIterator[Harness]:
    keys = make_keys()
    clock = FakeClock()
    outage = Outage()
    repo = FakeConnections(outage)
    api_keys = FakeApiKeys(outage)
    publisher = FakePublisher()

    async def answer(command: Any) -> Any:
        return refreshed_reply(
            command.connection_id, keys.sealer, clock(), token="00D000000000001!REFRESHED.token"
        )

    rpc = FakeRpc(answer)
    overrides = Overrides(
        connections=repo,
        integrations=FakeIntegrations(outage),
        api_keys=api_keys,
        idempotency=FakeIdempotency(outage),
        publisher=publisher,
        rpc=rpc,
        checks=checks or {},
        clock=clock,
        background=False,
        auth_cache_seconds=0,
    )
    app = build_app(manager_settings(keys, **settings), overrides=overrides)
    async with TestClient(TestServer(app)) as client:
        yield Harness(client, outage, repo, publisher, rpc, api_keys, keys, clock, app)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CREATE_BODY = {
    "name": "acme-prod",
    "admin_email": "admin@acme.com",
    "salesforce_username": "integration@acme.com",
    "org_id": "00D000000000001EAA",
}
