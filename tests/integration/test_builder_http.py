"""The Builder's HTTP API against the simulator and the real MongoDB-wire server: OAuth, orgs, objects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.builder_rig import BuilderRig, builder_rig

pytestmark = pytest.mark.integration


@pytest.fixture
async def rig(mongodb_url: str, mongo_db: Any, amqp_url: str, amqp_prefix: str) -> AsyncIterator[BuilderRig]:
    async with builder_rig(
        mongodb_url=mongodb_url, database=mongo_db.name, amqp_url=amqp_url, prefix=amqp_prefix
    ) as r:
        yield r


async def test_authorize_then_callback_stores_the_org_with_an_encrypted_refresh_token(
    rig: BuilderRig,
) -> None:
    page = await rig.authorize("acme")
    org_id = rig.org_id("acme")
    assert "Builder authorized" in page and org_id in page
    doc = await rig.db.orgs.find_one({"_id": org_id[:15]})
    assert doc["instance_url"] == rig.sim.org_url("acme")
    assert doc["refresh_token"].startswith("v1.k1.") and doc["access_token"].startswith("v1.k1.")
    refresh = rig.keyring.decrypt(doc["refresh_token"], record_id=org_id[:15], field="refresh_token")
    assert refresh and refresh not in str(doc)
    assert doc["scopes"] == ["api", "refresh_token"] and doc["status"] == "ok"
    assert doc["authorized_at"].tzinfo is not None
    async with rig.http.get(f"{rig.builder}/v1/orgs", headers=rig.admin) as resp:
        body = await resp.json()
    assert [o["org_id"] for o in body["orgs"]] == [org_id]
    assert refresh not in str(body)


async def test_the_authorize_redirect_carries_a_single_use_state_and_an_s256_challenge(
    rig: BuilderRig,
) -> None:
    async with rig.http.get(
        f"{rig.builder}/v1/salesforce/authorize", headers=rig.admin, allow_redirects=False
    ) as resp:
        assert resp.status == 302
        assert resp.headers["Cache-Control"] == "no-store"
        location = resp.headers["Location"]
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert location.startswith(f"{rig.sim}/services/oauth2/authorize?")
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["client_id"] == [rig.settings.salesforce_client_id]
    state = query["state"][0]
    stored = await rig.db.oauth_states.find_one({})
    assert state not in str(stored), "the state is stored hashed"
    assert stored["code_verifier"].startswith("v1.k1."), "the PKCE verifier is stored encrypted"
    async with rig.http.get(location, allow_redirects=False) as resp:
        callback = resp.headers["Location"]
    async with rig.http.get(callback) as resp:
        assert resp.status == 200
    async with rig.http.get(callback) as resp:
        assert resp.status == 400 and "already used" in await resp.text()


@pytest.mark.parametrize("query", ["state=never-issued&code=x", "code=x", "state=&code=x"])
async def test_a_callback_with_an_unknown_or_missing_state_is_refused(rig: BuilderRig, query: str) -> None:
    async with rig.http.get(f"{rig.builder}/v1/salesforce/callback?{query}") as resp:
        assert resp.status == 400
        assert resp.content_type == "text/html"
    assert await rig.db.orgs.count_documents({}) == 0


async def test_an_expired_state_is_refused(rig: BuilderRig) -> None:
    location = await rig.authorize_url("acme")
    await rig.db.oauth_states.update_many(
        {}, {"$set": {"expires_at": __import__("datetime").datetime(2000, 1, 1)}}
    )
    async with rig.http.get(location, allow_redirects=False) as resp:
        callback = resp.headers["Location"]
    async with rig.http.get(callback) as resp:
        assert resp.status == 400 and "expired" in await resp.text()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_login_url_outside_the_allowed_ones_is_refused_as_a_problem(
    rig: BuilderRig, method: str
) -> None:
    url = f"{rig.builder}/v1/salesforce/authorize?login_url=https://evil.example.com"
    async with rig.http.request(method, url, headers=rig.admin, allow_redirects=False) as resp:
        assert resp.status == 400
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["code"] == "invalid_input"
    assert await rig.db.oauth_states.count_documents({}) == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key-0123456789abcdef"}, {"X-API-Key": "wrong-key-0123456789abcdef"}],
    ids=["no key", "wrong bearer", "wrong x-api-key"],
)
async def test_starting_an_authorization_needs_the_admin_key_and_writes_nothing_without_it(
    rig: BuilderRig, method: str, headers: dict[str, str]
) -> None:
    url = f"{rig.builder}/v1/salesforce/authorize?login_url={rig.sim.org_url('acme')}"
    async with rig.http.request(method, url, headers=headers, allow_redirects=False) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        assert "Location" not in resp.headers
        assert (await resp.json())["code"] == "unauthenticated"
    assert await rig.db.oauth_states.count_documents({}) == 0


async def test_post_authorize_returns_the_url_for_a_browser_and_that_url_completes_the_flow(
    rig: BuilderRig,
) -> None:
    key_only = {"X-API-Key": rig.admin["Authorization"].removeprefix("Bearer ")}
    async with rig.http.post(
        f"{rig.builder}/v1/salesforce/authorize",
        params={"login_url": rig.sim.org_url("acme")},
        headers=key_only,
        allow_redirects=False,
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        assert resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
    assert set(body) == {"authorize_url", "expires_at"}
    query = parse_qs(urlsplit(body["authorize_url"]).query)
    assert body["authorize_url"].startswith(f"{rig.sim.org_url('acme')}/services/oauth2/authorize?")
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == [rig.settings.salesforce_callback_url]
    expires_at = datetime.fromisoformat(body["expires_at"])
    ttl = (expires_at - datetime.now(UTC)).total_seconds()
    assert rig.settings.oauth_state_ttl_seconds - 30 < ttl <= rig.settings.oauth_state_ttl_seconds
    assert await rig.db.oauth_states.count_documents({}) == 1
    # The admin's browser: Salesforce consent (auto-approved), then back to the open callback, no key.
    async with rig.http.get(body["authorize_url"], allow_redirects=False) as resp:
        callback = resp.headers["Location"]
    async with rig.http.get(callback) as resp:
        assert resp.status == 200 and "Builder authorized" in await resp.text()
    assert await rig.db.orgs.count_documents({"_id": rig.org_id("acme")[:15]}) == 1


async def _raw_get(url: str, header: bytes) -> tuple[int, bytes]:
    """GET with one header line sent byte for byte (an HTTP client would refuse non-UTF-8 bytes)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        b"GET "
        + parts.path.encode()
        + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + header
        + b"\r\n\r\n"
    )
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    "header", [b"X-API-Key: \xff\xfe\xfd", b"Authorization: Bearer \xff\xfe"], ids=["x-api-key", "bearer"]
)
async def test_an_admin_key_header_that_is_not_utf8_is_a_401_not_a_500(
    rig: BuilderRig, header: bytes
) -> None:
    status, body = await _raw_get(f"{rig.builder}/v1/orgs", header)
    assert status == 401, body
    assert b'"unauthenticated"' in body


async def test_the_admin_api_needs_the_key_as_bearer_or_x_api_key(rig: BuilderRig) -> None:
    async with rig.http.get(f"{rig.builder}/v1/orgs") as resp:
        assert resp.status == 401 and resp.content_type == "application/problem+json"
    async with rig.http.get(f"{rig.builder}/v1/orgs", headers={"Authorization": "Bearer wrong-key"}) as resp:
        assert resp.status == 401
    async with rig.http.get(
        f"{rig.builder}/v1/orgs", headers={"X-API-Key": rig.admin["Authorization"][7:]}
    ) as resp:
        assert resp.status == 200
    for path in ("/healthz", "/v1/openapi.json"):
        async with rig.http.get(f"{rig.builder}{path}") as resp:
            assert resp.status == 200


async def test_objects_are_listed_cached_and_revalidated_with_if_modified_since(rig: BuilderRig) -> None:
    await rig.authorize("acme")
    sim_org = rig.sim.state.org("acme")
    assert sim_org is not None
    used_before = sim_org.knobs.api_requests_used
    url = f"{rig.builder}/v1/orgs/{rig.org_id()}/objects"
    async with rig.http.get(url, headers=rig.admin) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        last_modified = resp.headers["Last-Modified"]
    names = {o["name"] for o in body["sobjects"]}
    assert {"Account", "Contact", "User", "PermissionSet"} <= names
    assert await rig.db.objects_cache.count_documents({}) == 1
    async with rig.http.get(url, headers={**rig.admin, "If-Modified-Since": last_modified}) as resp:
        assert resp.status == 304
    async with rig.http.get(url + "?refresh=true", headers=rig.admin) as resp:
        assert resp.status == 200
    assert sim_org.knobs.api_requests_used == used_before + 2, "one describeGlobal, then one answered 304"


async def test_an_expired_session_is_refreshed_and_the_rotated_refresh_token_is_stored(
    rig: BuilderRig,
) -> None:
    await rig.authorize("acme")
    org_id = rig.org_id()
    before = await rig.db.orgs.find_one({})
    await rig.sim_post("/__sim/orgs/acme/expire-sessions")
    async with rig.http.get(f"{rig.builder}/v1/orgs/{org_id}/objects", headers=rig.admin) as resp:
        assert resp.status == 200, await resp.text()
    after = await rig.db.orgs.find_one({})
    decrypt = rig.keyring.decrypt
    old = decrypt(before["refresh_token"], record_id=org_id[:15], field="refresh_token")
    new = decrypt(after["refresh_token"], record_id=org_id[:15], field="refresh_token")
    assert old != new, "rotation: the new refresh token replaced the old one"
    assert after["token_version"] == before["token_version"] + 1


async def test_a_revoked_grant_marks_the_org_and_answers_authorization_revoked(rig: BuilderRig) -> None:
    await rig.authorize("acme")
    await rig.sim_post("/__sim/orgs/acme/revoke-grants")
    async with rig.http.get(f"{rig.builder}/v1/orgs/{rig.org_id()}/objects", headers=rig.admin) as resp:
        assert resp.status == 409
        problem = await resp.json()
    assert problem["code"] == "authorization_revoked" and "authorize" in problem["detail"]
    assert (await rig.db.orgs.find_one({}))["status"] == "needs_reauth"


async def test_deleting_an_org_revokes_the_refresh_token_and_forgets_it(rig: BuilderRig) -> None:
    await rig.authorize("acme")
    org_id = rig.org_id()
    async with rig.http.delete(f"{rig.builder}/v1/orgs/{org_id}", headers=rig.admin) as resp:
        assert resp.status == 204
    assert await rig.db.orgs.count_documents({}) == 0
    assert rig.sim.state.tokens.grants == {}
    async with rig.http.delete(f"{rig.builder}/v1/orgs/{org_id}", headers=rig.admin) as resp:
        assert resp.status == 404 and (await resp.json())["code"] == "not_found"


async def test_readiness_metrics_and_unknown_routes(rig: BuilderRig) -> None:
    async with rig.http.get(f"{rig.builder}/readyz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ready", "checks": {"database": "up", "broker": "up"}}
    async with rig.http.get(f"{rig.builder}/metrics") as resp:
        text = await resp.text()
    assert "builder_http_requests_total" in text
    async with rig.http.get(f"{rig.builder}/v1/nope", headers=rig.admin) as resp:
        assert resp.status == 404 and resp.content_type == "application/problem+json"
    async with rig.http.get(f"{rig.builder}/v1/orgs/not-an-org/objects", headers=rig.admin) as resp:
        assert resp.status == 400
    # "$" matches before a final newline; org ids are checked with fullmatch, so this is refused too.
    newline = f"{rig.builder}/v1/orgs/{rig.org_id()}%0A/objects"
    async with rig.http.get(newline, headers=rig.admin) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == "invalid_input"


async def test_a_huge_declared_body_is_answered_at_once_since_no_view_reads_a_body(rig: BuilderRig) -> None:
    # The Manager refuses such a request with 413 before reading; the Builder's only POST reads no body,
    # so it must answer without waiting for the 999999999999 bytes announced.
    address = urlsplit(rig.builder)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        head = [
            "POST /v1/salesforce/authorize HTTP/1.1",
            f"Host: {address.netloc}",
            *(f"{name}: {value}" for name, value in rig.admin.items()),
            "Content-Type: application/json",
            "Content-Length: 999999999999",
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n{").encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status_line.split()[1] == b"200", status_line
