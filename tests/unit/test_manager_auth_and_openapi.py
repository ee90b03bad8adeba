"""API keys guard every scoped route; the OpenAPI document and the routing table agree."""

from __future__ import annotations

import re
from typing import Any

import pytest
from manager.apikeys import KEY_SHAPE, Authenticator, Scope, create_api_key, digest_of, revoke_api_key
from manager.errors import InsufficientScope, Unauthenticated
from manager.http.routes import ROUTES, Route
from manager.http.state import COMPONENTS

from shared.errors import InvalidInput
from tests.unit.manager_fakes import FakeApiKeys, FakeClock
from tests.unit.manager_http_harness import CREATE_BODY, auth, harness

pytestmark = pytest.mark.unit

MISSING_ID = "con_000000000000deadbeef00"  # well-shaped, never created
SCOPED = [r for r in ROUTES if r.scope is not None]
BODIES = {"createConnection": CREATE_BODY, "associateIntegration": {"connection_id": MISSING_ID}}


def _url(route: Route) -> str:
    return route.path.replace("{connection_id}", MISSING_ID).replace("{name}", "billing")


async def _call(client: Any, route: Route, headers: dict[str, str]) -> Any:
    return await client.request(route.method, _url(route), json=BODIES.get(route.name), headers=headers)


async def test_keys_are_high_entropy_shaped_and_stored_only_as_digests() -> None:
    repo = FakeApiKeys()
    record, plaintext = await create_api_key(repo, name="ci", scopes=["tokens:read"], now=FakeClock()())
    assert KEY_SHAPE.match(plaintext)
    assert plaintext.startswith(f"sfc_{record.id}_")
    assert len(plaintext.split("_", 2)[2]) == 43  # 256 random bits, base64url
    [(stored, digest)] = repo.by_id.values()
    assert digest == digest_of(plaintext) and plaintext not in repr(stored) and plaintext not in digest


async def test_unknown_scopes_and_empty_names_are_refused() -> None:
    repo = FakeApiKeys()
    with pytest.raises(Exception, match="scopes"):
        await create_api_key(repo, name="x", scopes=["admin"], now=FakeClock()())
    with pytest.raises(Exception, match="name"):
        await create_api_key(repo, name=" ", scopes=["tokens:read"], now=FakeClock()())


async def test_a_revoked_key_stops_working_and_scopes_are_enforced() -> None:
    repo = FakeApiKeys()
    clock = FakeClock()
    record, plaintext = await create_api_key(repo, name="ci", scopes=["tokens:read"], now=clock())
    authenticator = Authenticator(repo, cache_seconds=0)
    key = await authenticator.authenticate(plaintext)
    authenticator.authorize(key, Scope.TOKENS_READ)
    with pytest.raises(InsufficientScope):
        authenticator.authorize(key, Scope.CONNECTIONS_WRITE)
    await revoke_api_key(repo, record.id, now=clock())
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(plaintext)


async def test_authentication_is_cached_briefly_to_spare_the_database() -> None:
    repo = FakeApiKeys()
    _, plaintext = await create_api_key(repo, name="ci", scopes=["tokens:read"], now=FakeClock()())
    now = [0.0]
    authenticator = Authenticator(repo, cache_seconds=5, monotonic=lambda: now[0])
    for _ in range(10):
        await authenticator.authenticate(plaintext)
    assert repo.lookups == 1
    now[0] = 6
    await authenticator.authenticate(plaintext)
    assert repo.lookups == 2


@pytest.mark.parametrize("route", SCOPED, ids=lambda r: r.name)
async def test_every_scoped_endpoint_refuses_missing_wrong_and_under_scoped_keys(route: Route) -> None:
    async with harness() as h:
        good = await h.key(route.scope.value)  # type: ignore[union-attr]
        others = [s.value for s in Scope if s is not route.scope]
        under = await h.key(*others)
        revoked = await h.key(route.scope.value)  # type: ignore[union-attr]
        revoked_id = revoked.split("_")[1]
        await revoke_api_key(h.api_keys, revoked_id, now=h.clock())
        unknown = f"sfc_{'0' * 16}_{'A' * 43}"
        refused = {
            "missing": {},
            "malformed": auth("not-a-key"),
            "unknown": auth(unknown),
            "revoked": auth(revoked),
            "wrong scheme": {"Authorization": f"Basic {good}"},
        }
        for why, headers in refused.items():
            r = await _call(h.client, route, headers)
            body = await r.json()
            assert r.status == 401, (why, body)
            assert r.content_type == "application/problem+json"
            assert body["type"] == "https://sfconnect.dev/problems/unauthenticated"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert good not in str(body) and revoked not in str(body)
        r = await _call(h.client, route, auth(under))
        body = await r.json()
        assert r.status == 403 and body["code"] == "insufficient_scope"
        r = await _call(h.client, route, auth(good))
        assert r.status not in (401, 403)
        r = await _call(h.client, route, {"X-API-Key": good})
        assert r.status not in (401, 403)


async def test_operational_endpoints_need_no_key() -> None:
    async with harness() as h:
        for path in ("/healthz", "/readyz", "/metrics", "/v1/openapi.json"):
            assert (await h.client.get(path)).status == 200


async def test_the_openapi_document_lists_every_route_and_every_documented_route_exists() -> None:
    async with harness() as h:
        doc = await (await h.client.get("/v1/openapi.json")).json()
        assert doc["openapi"].startswith("3.1")
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        served = {
            (route.method, route.resource.canonical)
            for route in h.app.router.routes()
            if route.method != "HEAD" and route.resource is not None
        }
        assert documented == served
        # every documented operation answers something other than 404/405 at its documented address
        key = await h.key()
        for method, path in documented:
            url = path.replace("{connection_id}", MISSING_ID).replace("{name}", "billing")
            r = await h.client.request(
                method, url, headers=auth(key), json=BODIES.get(_name(doc, method, path))
            )
            assert r.status != 405
            if r.status == 404:
                assert (await r.json())["code"] in ("connection_not_found", "integration_not_found")


def _name(doc: dict[str, Any], method: str, path: str) -> str:
    return str(doc["paths"][path][method.lower()]["operationId"])


async def test_the_openapi_document_is_self_consistent() -> None:
    async with harness() as h:
        doc = await (await h.client.get("/v1/openapi.json")).json()
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', __import__("json").dumps(doc)))
    assert refs and refs <= set(doc["components"]["schemas"])
    create = doc["paths"]["/v1/connections"]["post"]
    schema = doc["components"]["schemas"][
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    ]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "admin_email", "salesforce_username", "org_id"}
    assert schema["properties"]["admin_email"]["format"] == "email"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    assert "application/problem+json" in response["content"], (method, path, status)
            if op.get("security"):
                assert {"401", "403"} <= set(op["responses"])


async def test_the_openapi_document_loads_in_an_independent_openapi_tool() -> None:
    import schemathesis

    async with harness() as h:
        doc = await (await h.client.get("/v1/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(doc)
    operations = {
        (op.method.upper(), op.path) for op in (result.ok() for result in schema.get_all_operations())
    }
    assert operations == {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}


async def test_components_are_built_from_the_overrides() -> None:
    async with harness() as h:
        assert h.app[COMPONENTS].connections.repo is h.repo


async def test_an_x_api_key_is_accepted_beside_a_non_bearer_authorization_and_a_bearer_one_wins() -> None:
    async with harness() as h:
        good = await h.key("connections:read")
        bad = f"sfc_{'0' * 16}_{'A' * 43}"
        accepted = {
            "Basic + X-API-Key": {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": good},
            "Digest + X-API-Key": {"Authorization": 'Digest username="u"', "X-API-Key": good},
            "bare scheme + X-API-Key": {"Authorization": "Negotiate", "X-API-Key": good},
            "Bearer good + X-API-Key bad": {**auth(good), "X-API-Key": bad},
            "lower-case bearer": {"Authorization": f"bearer {good}"},
        }
        for why, headers in accepted.items():
            r = await h.client.get("/v1/connections", headers=headers)
            assert r.status == 200, (why, await r.json())
        refused = {
            "Bearer bad + X-API-Key good": {**auth(bad), "X-API-Key": good},
            "empty Bearer + X-API-Key good": {"Authorization": "Bearer", "X-API-Key": good},
            "Basic alone": {"Authorization": f"Basic {good}"},
            "Basic + bad X-API-Key": {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": bad},
        }
        for why, headers in refused.items():
            r = await h.client.get("/v1/connections", headers=headers)
            body = await r.json()
            assert r.status == 401 and body["code"] == "unauthenticated", (why, body)


async def test_the_openapi_security_schemes_state_which_header_wins() -> None:
    async with harness() as h:
        doc = await (await h.client.get("/v1/openapi.json")).json()
    for scheme in doc["components"]["securitySchemes"].values():
        assert "Bearer `Authorization` header wins" in scheme["description"]
        assert "Basic" in scheme["description"]


@pytest.mark.parametrize(
    "name", ["", "   ", "a\nb", "ok\n", "\x1b[2J", "tab\t", "nul\x00", "line\u2028sep", "rlo\u202e", "z" * 65]
)
async def test_key_names_must_be_1_to_64_printable_characters(name: str) -> None:
    repo = FakeApiKeys()
    with pytest.raises(InvalidInput, match="name must be 1-64 printable characters") as info:
        await create_api_key(repo, name=name, scopes=["tokens:read"], now=FakeClock()())
    assert name.strip() == "" or name not in info.value.message
    assert repo.by_id == {}


async def test_key_names_keep_inner_spaces_and_unicode_letters_and_lose_outer_spaces() -> None:
    repo = FakeApiKeys()
    record, _ = await create_api_key(
        repo, name="  Équipe paie — prod  ", scopes=["tokens:read"], now=FakeClock()()
    )
    assert record.name == "Équipe paie — prod"
    record, _ = await create_api_key(repo, name="q" * 64, scopes=["tokens:read"], now=FakeClock()())
    assert record.name == "q" * 64


async def test_the_openapi_document_states_what_the_create_and_token_routes_really_answer() -> None:
    from manager.idempotency import KEY_SHAPE

    async with harness() as h:
        doc = await (await h.client.get("/v1/openapi.json")).json()
    create = doc["paths"]["/v1/connections"]["post"]
    [idem] = [p for p in create["parameters"] if p["name"] == "Idempotency-Key"]
    pattern = re.compile(idem["schema"]["pattern"])
    assert pattern.fullmatch("create-acme-1") and not pattern.fullmatch("with space")
    assert idem["schema"]["pattern"] == KEY_SHAPE.pattern
    assert "Retry-After" in create["responses"]["409"]["headers"]  # idempotency_key_in_progress
    for path in ("/v1/connections/{connection_id}/token", "/v1/integrations/{name}/token"):
        assert "decryption_failed" in doc["paths"][path]["get"]["responses"]["500"]["description"]
