"""SalesforceClient.request() keeps the token on instance_url: a path that could move it elsewhere is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shared.client import InvalidArgument, SalesforceClient, _url_on_instance

pytestmark = pytest.mark.unit
API_KEY = "sfc_test_key"
TOKEN = "00D000000000001!session-secret"


@dataclass
class Seen:
    org_calls: list[str] = field(default_factory=list)
    evil_calls: list[str] = field(default_factory=list)
    token_requests: int = 0


@pytest.fixture
async def world() -> AsyncIterator[tuple[Seen, str, str]]:
    """A Manager + org on one server (instance_url is its bare origin) and an 'evil' server."""
    seen = Seen()

    async def token(request: web.Request) -> web.StreamResponse:
        seen.token_requests += 1
        origin = str(request.url.origin())
        return web.json_response({"access_token": TOKEN, "instance_url": origin, "token_type": "Bearer"})

    async def org_any(request: web.Request) -> web.StreamResponse:
        has_token = request.headers.get("Authorization") == f"Bearer {TOKEN}"
        seen.org_calls.append(request.path_qs if has_token else f"without token: {request.path_qs}")
        return web.json_response({"ok": True})

    async def evil_any(request: web.Request) -> web.StreamResponse:
        seen.evil_calls.append(request.headers.get("Authorization", ""))
        return web.json_response({"stolen": True})

    org_app = web.Application()
    org_app.router.add_get("/v1/integrations/{name}/token", token)
    org_app.router.add_route("*", "/{tail:.*}", org_any)
    evil_app = web.Application()
    evil_app.router.add_route("*", "/{tail:.*}", evil_any)
    org, evil = TestServer(org_app, host="127.0.0.1"), TestServer(evil_app, host="127.0.0.1")
    await org.start_server()
    await evil.start_server()
    try:
        yield seen, str(org.make_url("")).rstrip("/"), f"127.0.0.1:{evil.port}"
    finally:
        await org.close()
        await evil.close()


BAD_PATHS = [
    "@{evil}/x",  # userinfo trick: instance_url + path names the evil host
    ".evil.example/x",  # host suffix trick
    ":{evil_port}@{evil}/x",
    "//{evil}/x",  # scheme-relative
    "/\\{evil}/x",
    "/x\\y",
    "http://{evil}/x",
    "/redirect/http://{evil}/x",
    "services/data/v68.0/",  # relative
    "",
    "/x\r\nHost: {evil}",
    "/x\ty",
]


@pytest.mark.parametrize("template", BAD_PATHS)
async def test_a_path_that_could_leave_the_instance_is_refused_and_nothing_is_sent(
    world: tuple[Seen, str, str], template: str
) -> None:
    seen, url, evil = world
    path = template.format(evil=evil, evil_port=evil.rsplit(":", 1)[1])
    async with SalesforceClient(url, API_KEY, integration="erp") as sf:
        with pytest.raises(InvalidArgument) as info:
            await sf.request("GET", path)
    assert seen.evil_calls == [] and seen.org_calls == []
    assert seen.token_requests == 0  # refused before the token is even fetched
    assert TOKEN not in str(info.value) and API_KEY not in str(info.value)


async def test_a_plain_path_still_reaches_the_instance_with_the_token(world: tuple[Seen, str, str]) -> None:
    seen, url, _ = world
    async with SalesforceClient(url, API_KEY, integration="erp") as sf:
        assert await sf.request("GET", "/services/data/v68.0/limits?x=@a.b") == {"ok": True}
        assert await sf.request("GET", "/services/data/v68.0/query?q=SELECT Id FROM Account") == {"ok": True}
    assert seen.org_calls == [
        "/services/data/v68.0/limits?x=@a.b",
        "/services/data/v68.0/query?q=SELECT+Id+FROM+Account",
    ]
    assert seen.evil_calls == []


@pytest.mark.parametrize(
    ("instance_url", "path"),
    [
        ("https://acme.my.salesforce.com", "@evil.example/x"),
        ("https://acme.my.salesforce.com", ".evil.example/x"),
        ("https://acme.my.salesforce.com", ":8443/x"),
        ("https://acme.my.salesforce.com:443", "@evil.example:443/x"),
    ],
)
def test_the_joined_url_is_checked_against_the_instance_origin(instance_url: str, path: str) -> None:
    """The second line of defence, behind the path check: scheme, host and port must stay the same."""
    with pytest.raises(InvalidArgument, match="another host"):
        _url_on_instance(instance_url, path)
    assert _url_on_instance(instance_url, "/services").host == "acme.my.salesforce.com"
