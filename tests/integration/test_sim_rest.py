"""The simulator's REST API: versions, describeGlobal, SOQL, permission sets, limits and injected faults."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from salesforce_sim.testing import SimulatorURL, running_simulator

from tests.integration.sim_support import TIMEOUT, web_server_login

pytestmark = pytest.mark.integration
QUOTED = "o'brien&co+sales@acme.example"


class Client:
    """A tiny REST client bound to one session."""

    def __init__(self, http: aiohttp.ClientSession, login: dict[str, Any]) -> None:
        self.http = http
        self.base = f"{login['instance_url']}/services/data/v68.0"
        self.headers = {"Authorization": f"Bearer {login['access_token']}"}

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
        async with self.http.request(
            method, self.base + path, headers={**self.headers, **kw.pop("headers", {})}, **kw
        ) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body, r.headers


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorURL]:
    async with running_simulator() as url:
        url.state.auto_approve = True
        yield url


@pytest.fixture
async def rest(sim) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        yield Client(http, await web_server_login(http, sim, "admin@acme.example"))


async def test_versions_are_listed_without_authentication(sim) -> None:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.get(f"{sim}/org/acme/services/data/") as r,
    ):
        versions = await r.json()
    assert versions[0] == {"label": "Summer '14", "url": "/services/data/v31.0", "version": "31.0"}
    assert versions[-1] == {"label": "Winter '27", "url": "/services/data/v68.0", "version": "68.0"}
    assert {"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"} in versions


async def test_describe_global_lists_objects_with_the_documented_fields(rest) -> None:
    status, body, _ = await rest.call("GET", "/sobjects/")
    assert status == 200 and body["encoding"] == "UTF-8" and body["maxBatchSize"] == 200
    ps = next(s for s in body["sobjects"] if s["name"] == "PermissionSet")
    assert ps["keyPrefix"] == "0PS" and ps["createable"] is True
    assert ps["urls"]["rowTemplate"] == "/services/data/v68.0/sobjects/PermissionSet/{ID}"
    documented = {
        "activateable",
        "custom",
        "customSetting",
        "createable",
        "deletable",
        "deprecatedAndHidden",
        "feedEnabled",
        "keyPrefix",
        "label",
        "labelPlural",
        "layoutable",
        "mergeable",
        "mruEnabled",
        "name",
        "queryable",
        "replicateable",
        "retrieveable",
        "searchable",
        "triggerable",
        "undeletable",
        "updateable",
        "urls",
    }
    assert set(ps) == documented


async def test_describe_global_answers_304_when_nothing_changed_since(rest) -> None:
    status, _, _ = await rest.call(
        "GET", "/sobjects", headers={"If-Modified-Since": formatdate(time.time() + 5, usegmt=True)}
    )
    assert status == 304
    status, _, _ = await rest.call(
        "GET", "/sobjects", headers={"If-Modified-Since": formatdate(time.time() - 3600, usegmt=True)}
    )
    assert status == 200


async def test_soql_finds_a_user_whose_username_needs_escaping(rest) -> None:
    literal = QUOTED.replace("\\", "\\\\").replace("'", "\\'")
    status, body, _ = await rest.call(
        "GET",
        "/query/",
        params={"q": f"SELECT Id, Username, IsActive FROM User WHERE Username = '{literal}'"},
    )
    assert status == 200 and body["totalSize"] == 1 and body["done"] is True
    record = body["records"][0]
    assert record["Username"] == QUOTED and record["IsActive"] is True
    assert record["attributes"] == {
        "type": "User",
        "url": f"/services/data/v68.0/sobjects/User/{record['Id']}",
    }


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Nope", "INVALID_TYPE"),
        ("SELECT Bogus FROM User", "INVALID_FIELD"),
        ("SELECT Id FROM User WHERE Username = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM User WHERE Username LIKE 'a%'", "MALFORMED_QUERY"),
    ],
)
async def test_bad_soql_gets_salesforce_error_codes(rest, soql, code) -> None:
    status, body, _ = await rest.call("GET", "/query", params={"q": soql})
    assert status == 400 and body[0]["errorCode"] == code


async def test_permission_sets_and_assignments_can_be_created_found_and_deleted(rest) -> None:
    status, created, _ = await rest.call(
        "POST", "/sobjects/PermissionSet/", json={"Name": "Conn_abc123", "Label": "Conn abc123"}
    )
    assert status == 201 and created["success"] is True and created["id"].startswith("0PS")
    status, dup, _ = await rest.call(
        "POST", "/sobjects/PermissionSet/", json={"Name": "Conn_abc123", "Label": "x"}
    )
    assert status == 400 and dup[0]["errorCode"] == "DUPLICATE_DEVELOPER_NAME"
    _, found, _ = await rest.call(
        "GET", "/query", params={"q": "SELECT Id, Name FROM PermissionSet WHERE Name = 'Conn_abc123'"}
    )
    assert found["records"][0]["Id"] == created["id"]
    _, users, _ = await rest.call(
        "GET", "/query", params={"q": "SELECT Id FROM User WHERE Username = 'integration+bot@acme.example'"}
    )
    user_id = users["records"][0]["Id"]
    status, psa, _ = await rest.call(
        "POST",
        "/sobjects/PermissionSetAssignment/",
        json={"AssigneeId": user_id, "PermissionSetId": created["id"]},
    )
    assert status == 201 and psa["id"].startswith("0Pa")
    status, again, _ = await rest.call(
        "POST",
        "/sobjects/PermissionSetAssignment/",
        json={"AssigneeId": user_id, "PermissionSetId": created["id"]},
    )
    assert status == 400 and again[0]["errorCode"] == "DUPLICATE_VALUE"
    q = f"SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = '{user_id[:15]}' AND PermissionSetId = '{created['id']}'"
    _, found, _ = await rest.call("GET", "/query", params={"q": q})
    assert [r["Id"] for r in found["records"]] == [psa["id"]]
    status, refused, _ = await rest.call("DELETE", f"/sobjects/PermissionSet/{created['id']}")
    assert status == 400 and refused[0]["errorCode"] == "DELETE_FAILED"
    assert (await rest.call("DELETE", f"/sobjects/PermissionSetAssignment/{psa['id']}"))[0] == 204
    assert (await rest.call("DELETE", f"/sobjects/PermissionSet/{created['id']}"))[0] == 204
    assert (await rest.call("GET", f"/sobjects/PermissionSet/{created['id']}"))[0] == 404


async def test_record_validation_errors(rest) -> None:
    status, body, _ = await rest.call(
        "POST", "/sobjects/PermissionSet", json={"Name": "bad name", "Label": "x"}
    )
    assert status == 400 and body[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    status, body, _ = await rest.call(
        "POST",
        "/sobjects/PermissionSetAssignment",
        json={"AssigneeId": "005000000000000", "PermissionSetId": "0PS000000000000"},
    )
    assert status == 400 and body[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    status, body, _ = await rest.call("POST", "/sobjects/Organization", json={"Name": "x"})
    assert status == 400 and body[0]["errorCode"] == "INVALID_TYPE_FOR_OPERATION"


async def test_the_api_request_limit_answers_403(sim, rest) -> None:
    knobs = sim.state.org("acme").knobs
    knobs.api_limit = knobs.api_requests_used + 2
    for _ in range(2):
        status, _, headers = await rest.call("GET", "/limits")
        assert status == 200 and headers["Sforce-Limit-Info"].startswith("api-usage=")
    status, body, _ = await rest.call("GET", "/sobjects")
    assert (status, body) == (
        403,
        [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    )
    knobs.api_limit = None
    assert (await rest.call("GET", "/sobjects"))[0] == 200


async def test_injected_5xx_and_latency_are_per_org_and_deterministic(sim, rest) -> None:
    knobs = sim.state.org("acme").knobs
    knobs.fail_next_5xx = 2
    statuses = [(await rest.call("GET", "/limits"))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    knobs.latency_ms = 150
    started = time.monotonic()
    assert (await rest.call("GET", "/limits"))[0] == 200
    assert time.monotonic() - started >= 0.15


async def test_unknown_versions_and_objects(rest) -> None:
    rest.base = rest.base.replace("v68.0", "v99.0")
    assert (await rest.call("GET", "/sobjects"))[0] == 404
    rest.base = rest.base.replace("v99.0", "v20.0")
    assert (await rest.call("GET", "/sobjects"))[0] == 410
    rest.base = rest.base.replace("v20.0", "v68.0")
    assert (await rest.call("POST", "/sobjects/Nope", json={}))[0] == 404


async def test_a_user_whose_license_refuses_permission_sets_cannot_be_assigned_one(sim, rest) -> None:
    refused = "Can't assign permission set to user: the user license doesn't allow the permission"
    async with rest.http.post(
        f"{sim}/__sim/orgs/acme/users",
        json={"username": "no+licence@acme.example", "preauthorization": "license_refused"},
    ) as resp:
        assert resp.status == 201, await resp.text()
        user = await resp.json()
    assert user["Preauthorization"] == "license_refused"
    ps_id = sim.state.org("acme").permission_set_by_name("Sales_Ops").id
    assignment = {"AssigneeId": user["Id"], "PermissionSetId": ps_id}
    status, body, _ = await rest.call("POST", "/sobjects/PermissionSetAssignment/", json=assignment)
    assert (status, body) == (
        400,
        [{"message": refused, "errorCode": "FIELD_INTEGRITY_EXCEPTION", "fields": ["AssigneeId"]}],
    )
    q = f"SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = '{user['Id']}'"
    assert (await rest.call("GET", "/query", params={"q": q}))[1]["records"] == []
    # The admin API changes the setting of an existing user: back to "ok", the assignment is made.
    async with rest.http.patch(
        f"{sim}/__sim/orgs/acme/users/no+licence@acme.example", json={"preauthorization": "ok"}
    ) as resp:
        assert resp.status == 200 and (await resp.json())["Preauthorization"] == "ok"
    status, body, _ = await rest.call("POST", "/sobjects/PermissionSetAssignment/", json=assignment)
    assert status == 201, body


async def test_an_unknown_preauthorization_setting_is_refused_by_the_admin_api(sim, rest) -> None:
    for method, path, body in (
        ("POST", "/orgs/acme/users", {"username": "x@acme.example", "preauthorization": "maybe"}),
        ("PATCH", "/orgs/acme/users/admin@acme.example", {"preauthorization": "maybe"}),
        (
            "POST",
            "/orgs/acme/users",
            {
                "username": "y@acme.example",
                "preauthorization": "license_refused",
                "permission_sets": ["Sales_Ops"],
            },
        ),
    ):
        async with rest.http.request(method, f"{sim}/__sim{path}", json=body) as resp:
            assert resp.status == 400, (path, body, await resp.text())
    assert sim.state.org("acme").user_by_username("admin@acme.example").preauthorization == "ok"


async def test_latest_resolves_to_the_newest_version(sim, rest) -> None:
    async with rest.http.get(f"{sim}/services/data/") as resp:
        newest = (await resp.json())[-1]["version"]
    rest.base = rest.base.replace("v68.0", "latest")
    status, body, _ = await rest.call("GET", "/")
    assert status == 200 and body["sobjects"] == f"/services/data/v{newest}/sobjects"
    status, body, headers = await rest.call("GET", "/sobjects/")
    assert status == 200
    assert body["sobjects"][0]["urls"]["sobject"].startswith(f"/services/data/v{newest}/")
    assert "Sforce-Limit-Info" in headers  # counted like any versioned call
    status, body, _ = await rest.call("GET", "/query", params={"q": "SELECT Id FROM Organization"})
    assert status == 200 and body["totalSize"] == 1
