"""Access: every protected operation of both services (as their served OpenAPI documents list them) refuses
missing, wrong, revoked and under-scoped credentials without doing anything; the OAuth callback refuses
unknown, reused and expired ``state``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pymongo import AsyncMongoClient

from tests.fault.conftest import Launch
from tests.fault.harness import ALL_SCOPES, Api, eventually, write_figures

pytestmark = pytest.mark.fault

PLACEHOLDER = {
    "connection_id": "con_019a0000000000000000aa",
    "name": "erp-sync",
    "org_id": "00D000000000001AAA",
}
BODIES: dict[str, dict[str, Any]] = {
    "post /v1/connections": {
        "name": "sneaky",
        "admin_email": "it@acme.example",
        "salesforce_username": "someone@acme.example",
        "org_id": "00D000000000001AAA",
    },
    "put /v1/integrations/{name}/connection": {"connection_id": PLACEHOLDER["connection_id"]},
}


def _fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


async def _operations(api: Api, base: str) -> list[tuple[str, str, list[str]]]:
    """(method, path template, required scopes) of every operation that declares security."""
    async with api.http.get(f"{base}/v1/openapi.json") as r:
        assert r.status == 200
        doc = await r.json()
    ops = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if op.get("security"):
                scopes = sorted({s for req in op["security"] for v in req.values() for s in v})
                ops.append((method, path, scopes))
    return ops


async def _call(
    api: Api, base: str, method: str, path: str, headers: dict[str, str], values: dict[str, str]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = BODIES.get(f"{method} {path}")
    async with api.http.request(
        method.upper(), base + _fill(path, values), json=body, headers=headers, allow_redirects=False
    ) as r:
        data = await r.json(content_type=None) if r.content_type.endswith("json") else {}
        return r.status, data, dict(r.headers)


def _wrong_secret(key: str) -> str:
    prefix, _, secret = key.rpartition("_")
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    return f"{prefix}_{flipped}"


async def test_every_manager_operation_refuses_missing_wrong_revoked_and_under_scoped_keys(
    launch: Launch,
) -> None:
    api = await launch()
    stack = api.stack
    api.api_key = stack.create_api_key("full", *ALL_SCOPES)
    org_id = await api.authorize()
    status, conn = await api.create(org_id, "guarded")
    assert status == 202, conn

    async def active() -> bool:
        return (await api.connection(conn["id"]))[1]["status"] == "active"

    await eventually(active, deadline_s=60, what="the guarded connection is active")
    values = {**PLACEHOLDER, "connection_id": conn["id"]}
    base = api.manager()
    ops = await _operations(api, base)
    assert {(m, p) for m, p, _ in ops} >= {
        ("post", "/v1/connections"),
        ("get", "/v1/connections"),
        ("get", "/v1/connections/{connection_id}"),
        ("delete", "/v1/connections/{connection_id}"),
        ("get", "/v1/connections/{connection_id}/token"),
        ("put", "/v1/integrations/{name}/connection"),
        ("get", "/v1/integrations/{name}/token"),
    }
    scoped = {s: stack.create_api_key(f"no-{s}", *[o for o in ALL_SCOPES if o != s]) for s in ALL_SCOPES}
    revoked = stack.create_api_key("revoked", *ALL_SCOPES)
    async with api.http.get(f"{base}/v1/connections", headers={"Authorization": f"Bearer {revoked}"}) as r:
        assert r.status == 200  # in use (and in the Manager's auth cache) when it is revoked
    await asyncio.to_thread(stack.manager_cli, "api-keys", "revoke", revoked.split("_")[1])
    revoked_at = time.monotonic()

    async def revocation_effective() -> bool:
        headers = {"Authorization": f"Bearer {revoked}"}
        async with api.http.get(f"{base}/v1/connections", headers=headers) as r:
            return r.status == 401

    await eventually(revocation_effective, deadline_s=15, what="the revoked key is refused", every_s=0.1)
    revocation_s = time.monotonic() - revoked_at
    unknown = f"sfc_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
    wrong: dict[str, dict[str, str]] = {
        "no credentials": {},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage bearer": {"Authorization": "Bearer not-a-key"},
        "unknown well-formed key": {"Authorization": f"Bearer {unknown}"},
        "right id, wrong secret": {"Authorization": f"Bearer {_wrong_secret(api.api_key)}"},
        "Basic scheme": {"Authorization": "Basic " + base64.b64encode(api.api_key.encode()).decode()},
        "garbage X-API-Key": {"X-API-Key": "garbage"},
        "the Builder's admin key": {"Authorization": f"Bearer {stack.admin_api_key}"},
        "a revoked key": {"Authorization": f"Bearer {revoked}"},
    }
    refusals: dict[str, int] = {}
    started = time.monotonic()
    for method, path, scopes in ops:
        for label, headers in wrong.items():

            async def refused(
                method: str = method, path: str = path, headers: dict[str, str] = headers
            ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
                out = await _call(api, base, method, path, headers, values)
                return out if out[0] == 401 else None

            status, body, resp_headers = await eventually(
                refused, deadline_s=0.1, what=f"{method} {path}: {label}"
            )
            assert body.get("code") == "unauthenticated" or body.get("status") == 401, body
            assert "Bearer" in resp_headers.get("WWW-Authenticate", "")
            refusals[f"401 {label}"] = refusals.get(f"401 {label}", 0) + 1
        for scope in scopes:
            status, body, _ = await _call(
                api, base, method, path, {"Authorization": f"Bearer {scoped[scope]}"}, values
            )
            assert status == 403, (method, path, scope, status, body)
            refusals[f"403 without {scope}"] = refusals.get(f"403 without {scope}", 0) + 1
            status, body, _ = await _call(api, base, method, path, {"X-API-Key": scoped[scope]}, values)
            assert status == 403, (method, path, scope, status, body)

    # Nothing happened: the connection is still active, nothing was created, no integration exists.
    view = await api.statuses([conn["id"]])
    assert view[conn["id"]]["status"] == "active"
    async with api.http.get(f"{base}/v1/connections", headers=api.auth) as r:
        names = [c["name"] for c in (await r.json())["items"]]
    assert names == ["guarded"]
    async with api.http.get(f"{base}/v1/integrations/erp-sync/token", headers=api.auth) as r:
        assert r.status == 404
    write_figures(
        "access-manager",
        {
            "operations": len(ops),
            "refusals": refusals,
            "revoked_key_refused_after_s": round(revocation_s, 1),
            "checked_in_s": round(time.monotonic() - started, 1),
        },
    )


async def test_every_builder_admin_operation_refuses_missing_and_wrong_keys(launch: Launch) -> None:
    api = await launch()
    stack = api.stack
    manager_key = stack.create_api_key("not-for-the-builder", *ALL_SCOPES)
    org_id = await api.authorize()
    base = api.builder()
    ops = await _operations(api, base)
    assert {(m, p) for m, p, _ in ops} >= {
        ("get", "/v1/salesforce/authorize"),
        ("get", "/v1/orgs"),
        ("get", "/v1/orgs/{org_id}/objects"),
        ("delete", "/v1/orgs/{org_id}"),
    }
    wrong = {
        "no credentials": {},
        "garbage bearer": {"Authorization": "Bearer not-the-key"},
        "admin key with one character changed": {
            "Authorization": f"Bearer {stack.admin_api_key[:-1]}{'A' if stack.admin_api_key[-1] != 'A' else 'B'}"
        },
        "admin key prefix": {"Authorization": f"Bearer {stack.admin_api_key[:16]}"},
        "Basic scheme": {"Authorization": "Basic " + base64.b64encode(stack.admin_api_key.encode()).decode()},
        "garbage X-API-Key": {"X-API-Key": "garbage"},
        "a Manager API key (every scope)": {"Authorization": f"Bearer {manager_key}"},
    }
    refusals = 0
    for method, path, _ in ops:
        for label, headers in wrong.items():
            status, body, resp_headers = await _call(api, base, method, path, headers, {"org_id": org_id})
            assert status == 401, (method, path, label, status, body)
            assert "Bearer" in resp_headers.get("WWW-Authenticate", "")
            refusals += 1
    async with api.http.get(f"{base}/v1/orgs", headers=api.admin) as r:
        assert [o["org_id"] for o in (await r.json())["orgs"]] == [org_id], "the org was deleted anyway"
    write_figures("access-builder", {"operations": len(ops), "refusals": refusals})


async def _consent(api: Api) -> tuple[str, str]:
    """Start an authorization and let the simulated org consent; returns (callback URL, state)."""
    async with api.http.get(
        f"{api.builder()}/v1/salesforce/authorize", headers=api.admin, allow_redirects=False
    ) as r:
        assert r.status == 302
        authorize_url = r.headers["Location"]
    async with api.http.get(authorize_url, allow_redirects=False) as r:
        assert r.status in (302, 303), await r.text()
        callback = r.headers["Location"]
    state = parse_qs(urlsplit(callback).query)["state"][0]
    return callback, state


def _received_codes(api: Api) -> int:
    text = api.stack.record_path.read_text() if api.stack.record_path.exists() else ""
    return text.count('"kind": "received_code"')


async def test_the_oauth_callback_refuses_unknown_reused_and_expired_state(launch: Launch) -> None:
    api = await launch()
    stack = api.stack
    outcomes: dict[str, str] = {}

    async def callback(url: str) -> tuple[int, str]:
        async with api.http.get(url, allow_redirects=False) as r:
            return r.status, await r.text()

    # unknown: a state the Builder never issued, with a code the org did issue
    url, state = await _consent(api)
    forged = url.replace(state, secrets.token_urlsafe(32))
    status, page = await callback(forged)
    assert status == 400 and "unknown" in page.lower(), page
    outcomes["unknown state"] = f"{status}"
    # reused: the first use succeeds, the replay is refused without a second code exchange
    status, page = await callback(url)
    assert status == 200, page
    exchanges = _received_codes(api)
    status, page = await callback(url)
    assert status == 400 and "already used" in page.lower(), page
    assert _received_codes(api) == exchanges, "a reused state still reached the token endpoint"
    outcomes["reused state"] = f"{status}"
    # no state at all
    status, page = await callback(url.split("?")[0] + "?code=abc")
    assert status == 400
    outcomes["missing state"] = f"{status}"
    # expired: age the stored state past its TTL (the database holds only its digest)
    url, state = await _consent(api)
    client: AsyncMongoClient[Any] = AsyncMongoClient(stack.mongodb_url)
    try:
        result = await client["sfconnect_builder"]["oauth_states"].update_one(
            {"_id": hashlib.sha256(state.encode()).hexdigest()},
            {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}},
        )
        assert result.modified_count == 1, "the state is not stored under its SHA-256 digest"
    finally:
        await client.close()
    exchanges = _received_codes(api)
    status, page = await callback(url)
    assert status == 400 and "expired" in page.lower(), page
    assert _received_codes(api) == exchanges
    outcomes["expired state"] = f"{status}"
    # the authorization from the one good callback is the only one stored
    async with api.http.get(f"{api.builder()}/v1/orgs", headers=api.admin) as r:
        assert len((await r.json())["orgs"]) == 1
    write_figures("access-oauth-state", outcomes)
