"""The client library for generated code, against a local stand-in of the Manager's token endpoint and an org."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shared.client import (
    ManagerError,
    ManagerUnavailable,
    SalesforceApiError,
    SalesforceClient,
    SalesforceUnavailable,
)

pytestmark = pytest.mark.unit
API_KEY = "sfc_test_key"


@dataclass
class Org:
    """Issues numbered tokens; the current one is the only valid session."""

    minted: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)
    calls: list[dict[str, str]] = field(default_factory=list)
    manager_mode: str = "ok"
    sf_mode: str = "ok"

    def current(self) -> str:
        return f"00D000000000001!session-{self.minted}"


@pytest.fixture
async def org() -> AsyncIterator[tuple[Org, str]]:
    state = Org()

    async def token(request: web.Request) -> web.StreamResponse:
        state.token_requests.append(dict(request.query))
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response({"title": "Unauthenticated", "detail": "no key"}, status=401)
        if state.manager_mode == "html503":
            return web.Response(text="<html>bad gateway</html>", status=503, content_type="text/html")
        if state.manager_mode == "slow":
            await asyncio.sleep(2)
        if request.query.get("force_refresh") == "true" or state.minted == 0:
            state.minted += 1
        return web.json_response(
            {
                "access_token": state.current(),
                "instance_url": str(request.url.origin()) + "/org/acme/",
                "token_type": "Bearer",
                "issued_at": "2026-12-03T10:00:00Z",
            }
        )

    async def sobjects(request: web.Request) -> web.StreamResponse:
        state.calls.append(dict(request.headers))
        if state.sf_mode == "html":
            return web.Response(text="<html>maintenance</html>", status=503, content_type="text/html")
        if request.headers.get("Authorization") != f"Bearer {state.current()}":
            return web.json_response(
                [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], status=401
            )
        if state.sf_mode == "limit":
            return web.json_response(
                [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                status=403,
            )
        return web.json_response({"sobjects": [{"name": "Account"}]})

    app = web.Application()
    app.router.add_get("/v1/integrations/{name}/token", token)
    app.router.add_get("/org/acme/services/data/v68.0/sobjects/", sobjects)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield state, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_an_expired_session_is_refreshed_once_and_the_callers_headers_are_sent_again(
    org: tuple[Org, str],
) -> None:
    state, url = org
    async with SalesforceClient(url, API_KEY, integration="erp") as sf:
        assert (await sf.describe_global())["sobjects"][0]["name"] == "Account"
        state.minted += 1  # the org expires the session the client holds
        result = await sf.request(
            "GET", sf.data_path("sobjects/"), headers={"Sforce-Query-Options": "batchSize=200"}
        )
    assert result["sobjects"]
    assert sf.refreshes == 1
    assert [c.get("Sforce-Query-Options") for c in state.calls[-2:]] == ["batchSize=200", "batchSize=200"]
    assert state.token_requests[-1] == {"force_refresh": "true"}


async def test_a_salesforce_error_other_than_an_expired_session_is_raised_with_its_code(
    org: tuple[Org, str],
) -> None:
    state, url = org
    state.sf_mode = "limit"
    async with SalesforceClient(url, API_KEY, integration="erp") as sf:
        with pytest.raises(SalesforceApiError) as info:
            await sf.describe_global()
    assert info.value.status == 403 and "REQUEST_LIMIT_EXCEEDED" in str(info.value)
    assert sf.refreshes == 0


async def test_an_html_error_page_from_salesforce_becomes_a_retryable_error(org: tuple[Org, str]) -> None:
    state, url = org
    state.sf_mode = "html"
    async with SalesforceClient(url, API_KEY, integration="erp") as sf:
        with pytest.raises(SalesforceUnavailable):
            await sf.describe_global()


async def test_an_html_503_from_a_proxy_before_the_manager_is_a_retryable_manager_error(
    org: tuple[Org, str],
) -> None:
    state, url = org
    state.manager_mode = "html503"
    async with SalesforceClient(url, API_KEY, integration="erp") as sf:
        with pytest.raises(ManagerUnavailable):
            await sf.describe_global()


async def test_a_refused_api_key_is_a_permanent_error_that_carries_no_key(org: tuple[Org, str]) -> None:
    _, url = org
    async with SalesforceClient(url, "wrong", integration="erp") as sf:
        with pytest.raises(ManagerError) as info:
            await sf.describe_global()
    assert "401" in str(info.value) and "wrong" not in str(info.value)


async def test_a_manager_that_does_not_answer_in_time_is_a_retryable_error(org: tuple[Org, str]) -> None:
    state, url = org
    state.manager_mode = "slow"
    async with SalesforceClient(url, API_KEY, integration="erp", timeout=0.3) as sf:
        with pytest.raises(ManagerUnavailable):
            await sf.describe_global()


def test_the_client_needs_exactly_one_of_integration_or_connection() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SalesforceClient("http://m", API_KEY)
    with pytest.raises(ValueError, match="exactly one"):
        SalesforceClient("http://m", API_KEY, integration="a", connection="b")


def test_the_token_never_shows_in_the_clients_repr() -> None:
    from shared.client import _Token

    assert "secret" not in repr(_Token("00Dxx!secret", "https://x", "Bearer"))
