"""API keys bound to integrations and connections read only those tokens; unbound keys read every token."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from manager.apikeys import ApiKey, authorize_token_read, create_api_key
from manager.errors import InsufficientScope

from shared.errors import InvalidInput
from tests.unit.manager_fakes import FakeApiKeys, FakeClock
from tests.unit.manager_http_harness import auth, harness

pytestmark = pytest.mark.unit

NOW = FakeClock()()
UNBOUND = ApiKey("0" * 16, "any", frozenset({"tokens:read"}), NOW)
BY_INTEGRATION = dataclasses.replace(UNBOUND, integrations=frozenset({"erp-sync", "hr-sync"}))
A, B = "con_00000000000000000000aa", "con_00000000000000000000bb"
BY_CONNECTION = dataclasses.replace(UNBOUND, connections=frozenset({A}))


def test_an_unbound_key_may_read_every_integration_and_connection_token() -> None:
    assert not UNBOUND.bound
    assert UNBOUND.may_read_integration_token("anything")
    assert UNBOUND.may_read_connection_token("con_anything")
    authorize_token_read(UNBOUND, integration="anything")
    authorize_token_read(UNBOUND, connection_id="con_anything")


def test_a_key_bound_to_integrations_reads_only_those_and_no_connection_directly() -> None:
    assert BY_INTEGRATION.bound
    authorize_token_read(BY_INTEGRATION, integration="erp-sync")
    authorize_token_read(BY_INTEGRATION, integration="hr-sync")
    with pytest.raises(InsufficientScope, match="not bound to integration 'billing'"):
        authorize_token_read(BY_INTEGRATION, integration="billing")
    with pytest.raises(InsufficientScope, match="not bound to connection"):
        authorize_token_read(BY_INTEGRATION, connection_id=A)


def test_a_key_bound_to_a_connection_reads_only_that_connection_and_no_integration() -> None:
    authorize_token_read(BY_CONNECTION, connection_id=A)
    with pytest.raises(InsufficientScope):
        authorize_token_read(BY_CONNECTION, connection_id=B)
    with pytest.raises(InsufficientScope):
        authorize_token_read(BY_CONNECTION, integration="erp-sync")


async def test_bindings_are_stored_with_the_key_and_duplicates_collapse() -> None:
    repo = FakeApiKeys()
    record, _ = await create_api_key(
        repo,
        name="erp",
        scopes=["tokens:read"],
        now=NOW,
        integrations=["erp-sync", "erp-sync", "hr-sync"],
        connections=[A],
    )
    assert record.integrations == {"erp-sync", "hr-sync"} and record.connections == {A}
    [(stored, _)] = repo.by_id.values()
    assert stored == record


@pytest.mark.parametrize(
    ("integrations", "connections", "mentions"),
    [
        (["ERP"], [], "slug"),
        (["-erp"], [], "slug"),
        (["erp_sync"], [], "slug"),
        (["a" * 64], [], "slug"),
        (["erp/../x"], [], "slug"),
        (["erp-sync\n"], [], "slug"),
        ([""], [], "slug"),
        ([], ["con a"], "connection id"),
        ([], ["_con"], "connection id"),
        ([], ["c" * 65], "connection id"),
        ([], ["con\n"], "connection id"),
        # only the shape the API gives out (con_ + 22 lower-case hex digits), as its paths require
        ([], ["nope"], "connection id"),
        ([], ["con_abc123"], "connection id"),
        ([], [A.upper()], "connection id"),
        ([], [A + "0"], "connection id"),
        ([f"i{n}" for n in range(101)], [], "at most 100"),
    ],
)
async def test_bad_bindings_are_refused_without_storing_a_key(
    integrations: list[str], connections: list[str], mentions: str
) -> None:
    repo = FakeApiKeys()
    with pytest.raises(InvalidInput, match=mentions):
        await create_api_key(
            repo,
            name="x",
            scopes=["tokens:read"],
            now=NOW,
            integrations=integrations,
            connections=connections,
        )
    assert repo.by_id == {}


async def test_bindings_without_the_tokens_read_scope_are_refused() -> None:
    repo = FakeApiKeys()
    with pytest.raises(InvalidInput, match="tokens:read"):
        await create_api_key(repo, name="x", scopes=["connections:read"], now=NOW, integrations=["erp-sync"])
    assert repo.by_id == {}


async def test_a_bound_key_is_refused_another_token_over_http_with_a_403_problem() -> None:
    async with harness() as h:
        _, key = await create_api_key(
            h.api_keys, name="erp", scopes=["tokens:read"], now=NOW, integrations=["erp-sync"]
        )
        for path in ("/v1/integrations/billing/token", "/v1/connections/con_000000000000deadbeef00/token"):
            r = await h.client.get(path, headers=auth(key))
            body: dict[str, Any] = await r.json()
            assert r.status == 403 and body["code"] == "insufficient_scope", body
            assert r.content_type == "application/problem+json"
