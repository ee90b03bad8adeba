"""The client library's typed errors: what the Manager said on a refused token request, and bad keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shared.client import (
    InvalidArgument,
    ManagerAccessDenied,
    ManagerError,
    ManagerNotFound,
    ManagerUnavailable,
    SalesforceClient,
)
from shared.errors import InvalidInput, PermanentError, RetryableError

pytestmark = pytest.mark.unit
API_KEY = "sfc_0123456789abcdef_" + "k" * 43

# status -> (problem document, extra headers) the stand-in Manager answers with
ANSWERS: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {
    "wrong-key": (401, {"code": "unauthenticated", "title": "Unauthenticated", "request_id": "r-401"}, {}),
    "bound-elsewhere": (403, {"code": "insufficient_scope", "detail": "bound to another integration"}, {}),
    "unknown": (404, {"code": "integration_not_found", "request_id": "r-404"}, {}),
    "deleted": (409, {"code": "connection_not_active", "detail": "the connection is deleted"}, {}),
    "undecryptable": (500, {"code": "decryption_failed", "request_id": "r-500"}, {}),
    "revoked": (502, {"code": "token_refresh_failed", "cause": "authorization_revoked"}, {}),
    "builder-down": (
        503,
        {"code": "builder_unavailable", "cause": "salesforce_unavailable"},
        {"Retry-After": "30", "X-Request-ID": "hdr-503"},
    ),
}


@pytest.fixture
async def manager_url() -> AsyncIterator[str]:
    async def token(request: web.Request) -> web.StreamResponse:
        status, problem, headers = ANSWERS[request.match_info["name"]]
        return web.json_response(problem, status=status, headers=headers)

    app = web.Application()
    app.router.add_get("/v1/integrations/{name}/token", token)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def _refusal(url: str, integration: str) -> Exception:
    async with SalesforceClient(url, API_KEY, integration=integration) as sf:
        with pytest.raises((ManagerError, ManagerUnavailable)) as info:
            await sf.describe_global()
    assert API_KEY not in str(info.value) and API_KEY not in repr(info.value.args)
    return info.value


@pytest.mark.parametrize(
    ("integration", "kind", "status", "code", "cause", "request_id"),
    [
        ("wrong-key", ManagerAccessDenied, 401, "unauthenticated", None, "r-401"),
        ("bound-elsewhere", ManagerAccessDenied, 403, "insufficient_scope", None, None),
        ("unknown", ManagerNotFound, 404, "integration_not_found", None, "r-404"),
        ("deleted", ManagerError, 409, "connection_not_active", None, None),
        ("undecryptable", ManagerError, 500, "decryption_failed", None, "r-500"),
        ("revoked", ManagerError, 502, "token_refresh_failed", "authorization_revoked", None),
    ],
)
async def test_a_refused_token_request_carries_status_code_cause_and_request_id(
    manager_url: str,
    integration: str,
    kind: type[ManagerError],
    status: int,
    code: str,
    cause: str | None,
    request_id: str | None,
) -> None:
    error = await _refusal(manager_url, integration)
    assert type(error) is kind and isinstance(error, PermanentError)
    assert isinstance(error, ManagerError)
    assert (error.status, error.code, error.cause, error.request_id) == (status, code, cause, request_id)
    assert f"({status})" in str(error) and code in str(error)


async def test_a_503_carries_retry_after_and_the_request_id_header(manager_url: str) -> None:
    error = await _refusal(manager_url, "builder-down")
    assert isinstance(error, ManagerUnavailable) and isinstance(error, RetryableError)
    assert error.retry_after == 30.0
    assert (error.status, error.code, error.cause, error.request_id) == (
        503,
        "builder_unavailable",
        "salesforce_unavailable",
        "hdr-503",
    )


@pytest.mark.parametrize("bad_key", ["", "sfc_abc\nX-Evil: 1", "sfc_abc\r", "sfc abc", "sfc_é", "sfc_\x00"])
def test_a_key_a_header_cannot_carry_is_refused_at_construction_without_echoing_it(bad_key: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        SalesforceClient("http://127.0.0.1:1", bad_key, integration="erp")
    assert isinstance(info.value, InvalidInput) and isinstance(info.value, ValueError)
    assert "API key" in str(info.value)
    if bad_key:
        assert bad_key not in str(info.value) and "sfc_" not in str(info.value)
