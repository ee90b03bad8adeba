"""The HTTP API over fakes: status codes, problem documents, validation, idempotency, pagination, outages."""

from __future__ import annotations

from typing import Any

import pytest
from manager.errors import BuilderUnavailable

from tests.unit.manager_http_harness import CREATE_BODY, auth, harness
from tests.unit.manager_world import SAMPLE_TOKEN

pytestmark = pytest.mark.unit

PROBLEM = "application/problem+json"
MISSING_ID = "con_000000000000deadbeef00"  # the shape the API gives out, never created


def assert_problem(response: Any, body: dict[str, Any], status: int, code: str) -> None:
    assert response.status == status, body
    assert response.content_type == PROBLEM
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://sfconnect.dev/problems/{code}"
    assert body["title"] and body["detail"]


async def test_create_answers_202_with_a_pending_connection_and_a_location() -> None:
    async with harness() as h:
        key = await h.key("connections:write")
        r = await h.client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))
        body = await r.json()
        assert r.status == 202
        assert body["status"] == "pending"
        assert body["label"] == "acme-prod" and body["app_kind"] == "auto"
        assert r.headers["Location"] == f"/v1/connections/{body['id']}"
        assert len(h.publisher.sent) == 1


async def test_a_taken_name_is_a_409_problem() -> None:
    async with harness() as h:
        key = await h.key()
        await h.client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))
        r = await h.client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))
        assert_problem(r, await r.json(), 409, "connection_name_taken")


async def test_the_same_idempotency_key_and_body_replay_the_first_response() -> None:
    async with harness() as h:
        key = await h.key()
        headers = {**auth(key), "Idempotency-Key": "create-acme-1"}
        first = await h.client.post("/v1/connections", json=CREATE_BODY, headers=headers)
        second = await h.client.post(
            "/v1/connections", json=dict(reversed(CREATE_BODY.items())), headers=headers
        )
        assert (first.status, second.status) == (202, 202)
        assert await first.json() == await second.json()
        assert second.headers["Idempotent-Replayed"] == "true"
        assert len(h.publisher.sent) == 1


async def test_the_same_idempotency_key_with_another_body_is_a_422_problem() -> None:
    async with harness() as h:
        key = await h.key()
        headers = {**auth(key), "Idempotency-Key": "create-acme-1"}
        await h.client.post("/v1/connections", json=CREATE_BODY, headers=headers)
        r = await h.client.post("/v1/connections", json={**CREATE_BODY, "name": "other"}, headers=headers)
        assert_problem(r, await r.json(), 422, "idempotency_key_reused")


async def test_idempotency_keys_of_different_api_keys_do_not_collide() -> None:
    async with harness() as h:
        one, two = await h.key(name="one"), await h.key(name="two")
        r1 = await h.client.post(
            "/v1/connections", json=CREATE_BODY, headers={**auth(one), "Idempotency-Key": "k"}
        )
        body = {**CREATE_BODY, "name": "second"}
        r2 = await h.client.post("/v1/connections", json=body, headers={**auth(two), "Idempotency-Key": "k"})
        assert (r1.status, r2.status) == (202, 202)


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"admin_email": "not-an-email"}, 422, "validation_failed", "admin_email"),
        (
            {"salesforce_username": "no spaces allowed@acme.com"},
            422,
            "validation_failed",
            "salesforce_username",
        ),
        ({"org_id": "12345"}, 422, "validation_failed", "org_id"),
        ({"name": "Not A Slug"}, 422, "validation_failed", "name"),
        ({"name": "x" * 64}, 422, "validation_failed", "name"),
        ({"label": "y" * 81}, 422, "validation_failed", "label"),
        # Metadata API XML cannot carry these: the Builder would fail on every delivery
        ({"label": "\uffff\ufffe x"}, 422, "validation_failed", "label"),
        ({"label": "Acme\x00ERP"}, 422, "validation_failed", "label"),
        ({"salesforce_username": "a\x00b@acme.com"}, 422, "validation_failed", "salesforce_username"),
        ({"salesforce_username": "evil\u202e@acme.com"}, 422, "validation_failed", "salesforce_username"),
        ({"app_kind": "magic"}, 422, "validation_failed", "app_kind"),
        ({"unexpected": True}, 422, "validation_failed", "unexpected"),
    ],
)
async def test_bad_create_bodies_get_422_problems_naming_the_field(
    change: dict[str, Any], status: int, code: str, field: str
) -> None:
    async with harness() as h:
        key = await h.key()
        r = await h.client.post("/v1/connections", json={**CREATE_BODY, **change}, headers=auth(key))
        body = await r.json()
        assert_problem(r, body, status, code)
        assert [field] in [e["loc"] for e in body["errors"]]
        assert "not-an-email" not in str(body)  # values are never echoed
        assert h.publisher.sent == []


async def test_malformed_oversized_and_non_json_bodies_get_4xx_problems() -> None:
    async with harness() as h:
        key = await h.key()
        r = await h.client.post(
            "/v1/connections", data=b"{not json", headers={**auth(key), "Content-Type": "application/json"}
        )
        assert_problem(r, await r.json(), 400, "invalid_json")
        r = await h.client.post(
            "/v1/connections", data=b"[1, 2]", headers={**auth(key), "Content-Type": "application/json"}
        )
        assert_problem(r, await r.json(), 400, "invalid_json")
        r = await h.client.post(
            "/v1/connections", data=b"name=x", headers={**auth(key), "Content-Type": "text/plain"}
        )
        assert_problem(r, await r.json(), 415, "unsupported_media_type")
        big = {**CREATE_BODY, "label": "z" * 70_000}
        r = await h.client.post("/v1/connections", json=big, headers=auth(key))
        assert_problem(r, await r.json(), 413, "payload_too_large")


async def test_bad_parameters_on_every_read_endpoint_get_4xx_problems() -> None:
    async with harness() as h:
        key = await h.key()
        cases = [
            ("GET", "/v1/connections?limit=0", 422, "validation_failed"),
            ("GET", "/v1/connections?limit=many", 422, "validation_failed"),
            ("GET", "/v1/connections?cursor=%%%", 400, "invalid_parameter"),
            ("GET", "/v1/connections?colour=blue", 422, "validation_failed"),
            ("GET", "/v1/connections/bad%20id!", 400, "invalid_parameter"),
            ("GET", "/v1/connections/nope", 400, "invalid_parameter"),  # not an id this API gives out
            # "$" in a pattern matches before a final newline: ids are checked with fullmatch
            ("GET", "/v1/connections/con_x%0A", 400, "invalid_parameter"),
            ("GET", "/v1/integrations/billing%0A/token", 400, "invalid_parameter"),
            ("GET", f"/v1/connections/{MISSING_ID}", 404, "connection_not_found"),
            ("DELETE", f"/v1/connections/{MISSING_ID}", 404, "connection_not_found"),
            ("DELETE", "/v1/connections/bad%20id!", 400, "invalid_parameter"),
            ("GET", f"/v1/connections/{MISSING_ID}/token", 404, "connection_not_found"),
            ("GET", f"/v1/connections/{MISSING_ID}/token?force_refresh=perhaps", 422, "validation_failed"),
            ("GET", "/v1/integrations/Bad_Name/token", 400, "invalid_parameter"),
            ("GET", "/v1/integrations/nobody/token", 404, "integration_not_found"),
            ("GET", "/v1/nowhere", 404, "not_found"),
            ("PATCH", "/v1/connections", 405, "method_not_allowed"),
        ]
        for method, path, status, code in cases:
            r = await h.client.request(method, path, headers=auth(key))
            assert_problem(r, await r.json(), status, code)


async def test_bad_integration_association_bodies_get_4xx_problems() -> None:
    async with harness() as h:
        key = await h.key()
        put = h.client.put
        r = await put("/v1/integrations/billing/connection", json={}, headers=auth(key))
        assert_problem(r, await r.json(), 422, "validation_failed")
        r = await put(
            "/v1/integrations/billing/connection",
            json={"connection_id": MISSING_ID, "x": 1},
            headers=auth(key),
        )
        assert_problem(r, await r.json(), 422, "validation_failed")
        r = await put(
            "/v1/integrations/billing/connection", json={"connection_id": MISSING_ID}, headers=auth(key)
        )
        assert_problem(r, await r.json(), 404, "connection_not_found")
        r = await put(
            "/v1/integrations/BAD/connection", json={"connection_id": MISSING_ID}, headers=auth(key)
        )
        assert_problem(r, await r.json(), 400, "invalid_parameter")


async def test_the_token_path_and_no_secret_outside_the_token_endpoints() -> None:
    async with harness() as h:
        key = await h.key()
        created = await (await h.client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))).json()
        r = await h.client.get(f"/v1/connections/{created['id']}/token", headers=auth(key))
        assert_problem(r, await r.json(), 409, "connection_not_active")
        await h.activate(created["id"])

        r = await h.client.get(f"/v1/connections/{created['id']}/token", headers=auth(key))
        token = await r.json()
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        assert token["access_token"] == SAMPLE_TOKEN
        assert set(token) == {"access_token", "instance_url", "token_type", "issued_at"}

        r = await h.client.put(
            "/v1/integrations/billing-sync/connection",
            json={"connection_id": created["id"]},
            headers=auth(key),
        )
        assert r.status == 200
        r = await h.client.get("/v1/integrations/billing-sync/token?force_refresh=true", headers=auth(key))
        assert (await r.json())["access_token"] == "00D000000000001!REFRESHED.token"

        for path in (f"/v1/connections/{created['id']}", "/v1/connections"):
            text = await (await h.client.get(path, headers=auth(key))).text()
            assert SAMPLE_TOKEN not in text and "REFRESHED" not in text
            assert "v1.k1." not in text  # not even the ciphertext


async def test_pages_link_with_an_opaque_cursor_until_the_end() -> None:
    async with harness() as h:
        key = await h.key()
        made = []
        for i in range(5):
            h.clock.advance(1)
            r = await h.client.post(
                "/v1/connections", json={**CREATE_BODY, "name": f"c{i}"}, headers=auth(key)
            )
            made.append((await r.json())["id"])
        seen, url = [], "/v1/connections?limit=2"
        while url:
            page = await (await h.client.get(url, headers=auth(key))).json()
            seen += [c["id"] for c in page["items"]]
            url = f"/v1/connections?limit=2&cursor={page['next_cursor']}" if page["next_cursor"] else ""
        assert seen == made


async def test_delete_answers_202_deleting() -> None:
    async with harness() as h:
        key = await h.key()
        created = await (await h.client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))).json()
        r = await h.client.delete(f"/v1/connections/{created['id']}", headers=auth(key))
        assert_problem(r, await r.json(), 409, "invalid_state_transition")
        await h.activate(created["id"])
        r = await h.client.delete(f"/v1/connections/{created['id']}", headers=auth(key))
        assert r.status == 202 and (await r.json())["status"] == "deleting"


async def test_a_database_outage_gives_503_problems_with_retry_after_on_every_endpoint() -> None:
    async with harness() as h:
        key = await h.key()
        await h.client.get("/v1/connections", headers=auth(key))  # the key is valid
        h.outage.down = True
        for method, path, body in [
            ("POST", "/v1/connections", CREATE_BODY),
            ("GET", "/v1/connections", None),
            ("GET", f"/v1/connections/{MISSING_ID}", None),
            ("DELETE", f"/v1/connections/{MISSING_ID}", None),
            ("PUT", "/v1/integrations/x/connection", {"connection_id": MISSING_ID}),
            ("GET", f"/v1/connections/{MISSING_ID}/token", None),
            ("GET", "/v1/integrations/x/token", None),
        ]:
            r = await h.client.request(method, path, json=body, headers=auth(key))
            assert_problem(r, await r.json(), 503, "database_unavailable")
            assert int(r.headers["Retry-After"]) >= 1
        assert (await h.client.get("/healthz")).status == 200


async def test_a_builder_that_does_not_answer_gives_503_with_retry_after() -> None:
    async with harness() as h:
        key = await h.key()
        created = await (await h.client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))).json()
        await h.activate(created["id"])

        async def unavailable(_: Any) -> Any:
            raise BuilderUnavailable("no answer", retry_after=7)

        h.rpc.answer = unavailable
        r = await h.client.get(f"/v1/connections/{created['id']}/token?force_refresh=true", headers=auth(key))
        assert_problem(r, await r.json(), 503, "builder_unavailable")
        assert r.headers["Retry-After"] == "7"


async def test_readiness_is_503_when_a_dependency_is_down() -> None:
    state = {"database": True}

    async def database() -> bool:
        return state["database"]

    async def broker() -> bool:
        return True

    async with harness(checks={"database": database, "broker": broker}) as h:
        r = await h.client.get("/readyz")
        assert r.status == 200 and (await r.json())["checks"] == {"database": "up", "broker": "up"}
        state["database"] = False
        r = await h.client.get("/readyz")
        body = await r.json()
        assert_problem(r, body, 503, "not_ready")
        assert body["checks"] == {"database": "down", "broker": "up"} and r.headers["Retry-After"] == "5"


async def test_request_ids_are_echoed_or_made() -> None:
    async with harness() as h:
        r = await h.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert r.headers["X-Request-ID"] == "abc-123"
        r = await h.client.get("/v1/connections")
        body = await r.json()
        assert len(r.headers["X-Request-ID"]) == 32 and body["request_id"] == r.headers["X-Request-ID"]
        r = await h.client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
        assert r.headers["X-Request-ID"] != "bad id\twith spaces"


async def test_metrics_count_requests_by_route_template() -> None:
    async with harness() as h:
        key = await h.key()
        await h.client.get(f"/v1/connections/{MISSING_ID}", headers=auth(key))
        text = await (await h.client.get("/metrics")).text()
        assert 'route="/v1/connections/{connection_id}"' in text and 'status="404"' in text
        assert "sfconnect_manager_commands_published_total" in text


async def test_a_refresh_the_builder_refuses_is_a_502_problem_naming_the_builders_code() -> None:
    from shared.contracts import CommandFailed, ErrorCode, ErrorDetail, RefreshConnectionToken

    async with harness() as h:
        key = await h.key()
        created = await (await h.client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))).json()
        await h.activate(created["id"])

        async def refused(command: Any) -> Any:
            return CommandFailed(
                connection_id=command.connection_id,
                command_type=RefreshConnectionToken.message_type,
                error=ErrorDetail(code=ErrorCode.AUTHORIZATION_REVOKED, message="invalid_grant: expired"),
            )

        h.rpc.answer = refused
        r = await h.client.get(f"/v1/connections/{created['id']}/token?force_refresh=true", headers=auth(key))
        body = await r.json()
        assert_problem(r, body, 502, "token_refresh_failed")
        assert body["cause"] == "authorization_revoked" and "invalid_grant" in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/connections", b"[" * 1500 + b"]" * 1500),
        ("POST", "/v1/connections", b'{"name": ' + b"[" * 900 + b"]" * 900 + b"}"),
        ("PUT", "/v1/integrations/x/connection", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
        ("PUT", "/v1/integrations/x/connection", b'{"connection_id": ' + b"[" * 990 + b"]" * 990 + b"}"),
        # past int's 4300-digit conversion limit, json.loads raises a plain ValueError
        ("POST", "/v1/connections", b'{"name": 1' + b"0" * 5000 + b"}"),
        ("PUT", "/v1/integrations/x/connection", b'{"connection_id": -9' + b"9" * 4400 + b"}"),
    ],
    ids=[
        "array-1500-deep",
        "array-900-deep-in-a-field",
        "object-10000-deep",
        "array-990-deep-in-a-field",
        "integer-5001-digits",
        "integer-4401-digits",
    ],
)
async def test_deeply_nested_json_under_the_size_limit_is_a_4xx_problem_not_a_500(
    method: str, path: str, body: bytes
) -> None:
    assert len(body) < 64 * 1024
    async with harness() as h:
        key = await h.key()
        headers = {**auth(key), "Content-Type": "application/json"}
        r = await h.client.request(method, path, data=body, headers=headers)
        problem = await r.json()
        assert r.status in (400, 422), problem
        assert_problem(r, problem, r.status, "invalid_json" if r.status == 400 else "validation_failed")
        assert h.publisher.sent == []
        # the Manager still answers normally afterwards
        r = await h.client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))
        assert r.status == 202


async def test_a_token_stored_under_a_key_this_replica_lacks_is_a_500_decryption_failed_until_refreshed() -> (
    None
):
    from shared.crypto import Keyring, generate_key

    async with harness() as h:
        key = await h.key()
        created = await (await h.client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))).json()
        await h.activate(created["id"])
        # what another replica (or rotate-keys) with a newer first key would have written
        newer = Keyring.parse(f"k9:{generate_key()}")
        doc = h.repo.docs[created["id"]]
        doc["token"]["ciphertext"] = newer.encrypt(
            SAMPLE_TOKEN, record_id=created["id"], field="access_token"
        )

        r = await h.client.get(f"/v1/connections/{created['id']}/token", headers=auth(key))
        body = await r.json()
        assert_problem(r, body, 500, "decryption_failed")
        assert "'k9'" in body["detail"] and SAMPLE_TOKEN not in str(body)
        shown = await (await h.client.get(f"/v1/connections/{created['id']}", headers=auth(key))).json()
        assert shown["status"] == "active"  # reading the connection itself does not decrypt

        r = await h.client.get(f"/v1/connections/{created['id']}/token?force_refresh=true", headers=auth(key))
        assert r.status == 200 and (await r.json())["access_token"] == "00D000000000001!REFRESHED.token"
