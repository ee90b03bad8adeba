"""MongoDB goes away under a running Manager: 503 problem documents, no crash, nothing lost."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.contracts import CreateConnection
from tests.infra import SecantusProcess
from tests.integration.manager_stack import CREATE_BODY, ManagerStack, auth, eventually, manager_stack

pytestmark = [
    pytest.mark.fault,
    # A client socket to the stopped or frozen server can be left to the garbage collector when the
    # outage cuts a driver connection attempt short (seen once in a CI run: "unclosed <socket.socket ...
    # laddr=('127.0.0.1', ...)>" at teardown, after the test itself had passed). That socket belongs to the
    # database driver's pool, not to our code; only this warning is let through here, every other
    # warning still fails the test (pyproject: filterwarnings = error).
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
]
__all__ = ["manager_stack"]


@pytest.fixture
def own_mongodb() -> Iterator[SecantusProcess]:
    """A MongoDB-wire server of this test's own, so it can be stopped and started again."""
    server = SecantusProcess()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.storage, ignore_errors=True)


async def test_endpoints_answer_503_problems_while_the_database_is_down_and_recover(
    manager_stack: ManagerStack, own_mongodb: SecantusProcess
) -> None:
    s = manager_stack
    s.mongodb_url = own_mongodb.url
    client = await s.start_app(mongodb_timeout_seconds=1)
    from pymongo import AsyncMongoClient

    direct: AsyncMongoClient[Any] = AsyncMongoClient(own_mongodb.url, tz_aware=True)
    s.db = direct[s.db.name]
    key = await s.api_key()
    conn = await s.create_active(client, key, "acme-prod")
    await direct.close()

    own_mongodb.stop()
    calls = [
        ("POST", "/v1/connections", {**CREATE_BODY, "name": "during-outage"}),
        ("GET", "/v1/connections", None),
        ("GET", f"/v1/connections/{conn['id']}", None),
        ("DELETE", f"/v1/connections/{conn['id']}", None),
        ("PUT", "/v1/integrations/x/connection", {"connection_id": conn["id"]}),
        ("GET", f"/v1/connections/{conn['id']}/token", None),
        ("GET", "/v1/integrations/x/token", None),
    ]
    for method, path, body in calls:
        started = time.monotonic()
        r = await client.request(method, path, json=body, headers=auth(key))
        problem = await r.json()
        assert r.status == 503, (method, path, problem)
        assert r.content_type == "application/problem+json"
        assert problem["code"] == "database_unavailable" and "Retry-After" in r.headers
        assert time.monotonic() - started < 5
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["checks"]["database"] == "down"

    own_mongodb.start()

    async def recovered() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(recovered, deadline=30, what="ready again")
    r = await client.get(f"/v1/connections/{conn['id']}/token", headers=auth(key))
    assert r.status == 200 and (await r.json())["access_token"] == s.builder.minted[0]


async def test_a_reply_arriving_during_an_outage_is_retried_and_applied_once_the_database_is_back(
    manager_stack: ManagerStack, own_mongodb: SecantusProcess
) -> None:
    s = manager_stack
    s.mongodb_url = own_mongodb.url
    s.builder.hold_creates = asyncio.Event()
    client = await s.start_app(mongodb_timeout_seconds=1)
    from pymongo import AsyncMongoClient

    direct: AsyncMongoClient[Any] = AsyncMongoClient(own_mongodb.url, tz_aware=True)
    s.db = direct[s.db.name]
    key = await s.api_key()
    await direct.close()
    cid = (await (await client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))).json())["id"]

    async def received() -> bool:
        return bool(s.builder.commands(CreateConnection))

    await eventually(received, what="create command received")
    own_mongodb.stop()
    s.builder.hold_creates.set()  # the reply now reaches a Manager whose database is down
    await asyncio.sleep(2)
    own_mongodb.start()

    async def active() -> bool:
        r = await client.get(f"/v1/connections/{cid}", headers=auth(key))
        return r.status == 200 and (await r.json())["status"] == "active"

    await eventually(active, deadline=40, what="reply applied after the outage")
