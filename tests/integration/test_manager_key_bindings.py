"""Bound API keys through the real HTTP app, broker and MongoDB-wire server: only their tokens are readable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from manager.apikeys import MongoApiKeys, create_api_key, digest_of, generate_key
from manager.ports import utc_now_ms

from tests.integration.manager_stack import ManagerStack, auth, manager_stack

pytestmark = pytest.mark.integration
__all__ = ["manager_stack"]


async def _key(s: ManagerStack, *, integrations: Sequence[str] = (), connections: Sequence[str] = ()) -> str:
    _, plaintext = await create_api_key(
        MongoApiKeys(s.db),
        name="generated-code",
        scopes=["tokens:read"],
        now=utc_now_ms(),
        integrations=integrations,
        connections=connections,
    )
    return plaintext


async def _status(client: Any, path: str, key: str) -> tuple[int, dict[str, Any]]:
    r = await client.get(path, headers=auth(key))
    return r.status, await r.json()


async def test_a_bound_key_reads_its_integrations_token_and_is_refused_every_other(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    client = await s.start_app()
    admin = await s.api_key()
    erp = await s.create_active(client, admin, "acme-erp")
    other = await s.create_active(client, admin, "acme-other")
    for name, conn in (("erp-sync", erp), ("other-sync", other)):
        r = await client.put(
            f"/v1/integrations/{name}/connection", json={"connection_id": conn["id"]}, headers=auth(admin)
        )
        assert r.status == 200, await r.text()

    bound = await _key(s, integrations=["erp-sync"])
    status, body = await _status(client, "/v1/integrations/erp-sync/token", bound)
    assert status == 200 and body["access_token"], body
    for path in (
        "/v1/integrations/other-sync/token",
        f"/v1/connections/{other['id']}/token",
        f"/v1/connections/{erp['id']}/token",  # the integration binding counts only through its endpoint
        "/v1/integrations/never-created/token",  # 403, not 404: a bound key learns nothing of others
    ):
        status, body = await _status(client, path, bound)
        assert status == 403 and body["code"] == "insufficient_scope", (path, body)
        assert "access_token" not in body

    by_connection = await _key(s, connections=[other["id"]])
    assert (await _status(client, f"/v1/connections/{other['id']}/token", by_connection))[0] == 200
    assert (await _status(client, f"/v1/connections/{erp['id']}/token", by_connection))[0] == 403
    assert (await _status(client, "/v1/integrations/other-sync/token", by_connection))[0] == 403

    unbound = await _key(s)
    for path in (
        "/v1/integrations/erp-sync/token",
        "/v1/integrations/other-sync/token",
        f"/v1/connections/{other['id']}/token",
    ):
        assert (await _status(client, path, unbound))[0] == 200, path


async def test_bound_integration_follows_the_connection_it_points_to_now(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    client = await s.start_app()
    admin = await s.api_key()
    first = await s.create_active(client, admin, "acme-first")
    second = await s.create_active(client, admin, "acme-second")
    bound = await _key(s, integrations=["erp-sync"])
    tokens = []
    for conn in (first, second):
        r = await client.put(
            "/v1/integrations/erp-sync/connection", json={"connection_id": conn["id"]}, headers=auth(admin)
        )
        assert r.status == 200
        status, body = await _status(client, "/v1/integrations/erp-sync/token", bound)
        assert status == 200
        tokens.append(body["access_token"])
    assert tokens[0] != tokens[1]


async def test_a_key_stored_before_bindings_existed_is_unbound(manager_stack: ManagerStack) -> None:
    s = manager_stack
    client = await s.start_app()
    admin = await s.api_key()
    conn = await s.create_active(client, admin, "acme-legacy")
    key_id, plaintext = generate_key()
    await s.db["api_keys"].insert_one(
        {
            "_id": key_id,
            "name": "legacy",
            "scopes": ["tokens:read"],
            "digest": digest_of(plaintext),
            "created_at": utc_now_ms(),
            "revoked_at": None,
        }
    )
    [legacy] = [k for k in await MongoApiKeys(s.db).all() if k.id == key_id]
    assert not legacy.bound
    assert (await _status(client, f"/v1/connections/{conn['id']}/token", plaintext))[0] == 200
