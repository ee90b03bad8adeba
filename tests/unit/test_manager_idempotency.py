"""Idempotency-Key after a crash: a retry replays its own body's connection and never another body's."""

from __future__ import annotations

from typing import Any

import pytest
from manager.http.state import COMPONENTS

from tests.unit.manager_http_harness import CREATE_BODY, Harness, auth, harness

pytestmark = pytest.mark.unit

OTHER_BODY = {**CREATE_BODY, "name": "globex-prod", "org_id": "00D000000000002EAA"}


async def _crash_after_recording(h: Harness, key: str, idem: str) -> str:
    """A create that recorded its connection and died before completing its idempotency record."""
    h.app[COMPONENTS].idempotency.fail_complete = True
    r = await h.client.post(
        "/v1/connections", json=CREATE_BODY, headers={**auth(key), "Idempotency-Key": idem}
    )
    assert r.status == 503, await r.json()
    [conn_id] = h.repo.docs
    return conn_id


async def test_a_stale_claim_is_not_taken_over_by_another_body() -> None:
    async with harness() as h:
        key = await h.key()
        first_id = await _crash_after_recording(h, key, "crash-1")
        h.clock.advance(61)  # the crashed request's claim is stale now
        headers = {**auth(key), "Idempotency-Key": "crash-1"}
        r = await h.client.post("/v1/connections", json=OTHER_BODY, headers=headers)
        body: dict[str, Any] = await r.json()
        assert r.status == 422 and body["code"] == "idempotency_key_reused", body
        assert "Idempotent-Replayed" not in r.headers
        # the same body still gets the recorded connection back
        r = await h.client.post("/v1/connections", json=CREATE_BODY, headers=headers)
        assert r.status == 202 and (await r.json())["id"] == first_id
        assert r.headers["Idempotent-Replayed"] == "true"
        assert list(h.repo.docs) == [first_id]


async def test_after_the_record_expired_another_body_is_refused_and_the_key_is_not_left_claimed() -> None:
    async with harness() as h:
        key = await h.key()
        first_id = await _crash_after_recording(h, key, "crash-2")
        store = h.app[COMPONENTS].idempotency
        store.records.clear()  # the TTL index removed the record; the connection keeps its ref
        headers = {**auth(key), "Idempotency-Key": "crash-2"}
        r = await h.client.post("/v1/connections", json=OTHER_BODY, headers=headers)
        body: dict[str, Any] = await r.json()
        assert r.status == 422 and body["code"] == "idempotency_key_reused", body
        assert store.records == {}  # the claim made for the refused body was given back
        r = await h.client.post("/v1/connections", json=CREATE_BODY, headers=headers)
        assert r.status == 202 and (await r.json())["id"] == first_id
        assert list(h.repo.docs) == [first_id]
        assert len(h.publisher.sent) == 1


async def test_a_connection_recorded_without_a_fingerprint_is_compared_field_by_field() -> None:
    async with harness() as h:
        key = await h.key()
        first_id = await _crash_after_recording(h, key, "crash-3")
        h.repo.docs[first_id]["idempotency_fingerprint"] = None  # written before fingerprints were kept
        h.app[COMPONENTS].idempotency.records.clear()
        headers = {**auth(key), "Idempotency-Key": "crash-3"}
        r = await h.client.post("/v1/connections", json=OTHER_BODY, headers=headers)
        assert r.status == 422
        r = await h.client.post("/v1/connections", json=CREATE_BODY, headers=headers)
        assert r.status == 202 and (await r.json())["id"] == first_id


async def test_a_key_in_use_answers_409_with_retry_after() -> None:
    from manager.http.schemas import CreateConnectionRequest
    from manager.idempotency import fingerprint, scoped_key

    async with harness() as h:
        key = await h.key()
        ref = scoped_key(key.split("_")[1], "busy")
        body_fp = fingerprint(CreateConnectionRequest.model_validate(CREATE_BODY).model_dump(mode="json"))
        store = h.app[COMPONENTS].idempotency
        assert await store.begin(ref, fingerprint=body_fp, now=h.clock(), stale_before=h.clock()) is None
        r = await h.client.post(
            "/v1/connections", json=CREATE_BODY, headers={**auth(key), "Idempotency-Key": "busy"}
        )
        problem: dict[str, Any] = await r.json()
        assert r.status == 409 and problem["code"] == "idempotency_key_in_progress", problem
        assert r.headers["Retry-After"] == "5"
        assert h.repo.docs == {}
