"""How the HTTP API reads requests: body encodings and framing, declared sizes, connection-id shapes, the
status filter of the list. Raw requests go over a socket to the real aiohttp server (no client helper
would send a body that contradicts its headers)."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib
from typing import Any

import pytest
from manager.http import views

from tests.unit.manager_http_harness import CREATE_BODY, Harness, auth, harness

pytestmark = pytest.mark.unit

PROBLEM = "application/problem+json"
MISSING_ID = "con_000000000000deadbeef00"  # the shape the API gives out, never created
BODY = json.dumps(CREATE_BODY).encode()


async def raw(
    h: Harness, head: str, body: bytes = b"", *, within: float = 5.0, pause: float = 0.0
) -> tuple[int, dict[str, Any]]:
    """Send ``head`` (request line and headers, CRLF-separated, without the blank line) and ``body`` as
    they are (``body`` ``pause`` seconds after ``head`` when given); the status and the JSON body of the
    answer, which must come within ``within`` seconds."""
    server = h.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head.encode() + b"\r\n\r\n" + (b"" if pause else body))
        await writer.drain()
        if pause:
            await asyncio.sleep(pause)
            writer.write(body)
            await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), within)
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), within)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        payload = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), within)
    finally:
        writer.close()
    assert headers["content-type"].startswith(PROBLEM), headers
    return int(status_line.split()[1]), json.loads(payload)


def post_head(key: str, *extra: str, path: str = "/v1/connections", method: str = "POST") -> str:
    return "\r\n".join(
        [
            f"{method} {path} HTTP/1.1",
            "Host: localhost",
            f"Authorization: Bearer {key}",
            "Content-Type: application/json",
            *extra,
        ]
    )


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", BODY),  # says gzip, is not: used to be a 500 with a traceback
        ("deflate", BODY),
        ("gzip", gzip.compress(BODY)),  # really gzip: refused all the same (one rule, no decoding)
        ("deflate", zlib.compress(BODY)),
        ("br", BODY),  # used to be aiohttp's text/plain 400 "Please install Brotli"
        ("zstd", BODY),
        ("foo", BODY),  # used to be accepted silently
        ("identity, gzip", BODY),
    ],
)
async def test_a_content_encoding_other_than_identity_is_a_415_problem_naming_the_header(
    encoding: str, body: bytes
) -> None:
    async with harness() as h:
        key = await h.key()
        for path, method, sent in (
            ("/v1/connections", "POST", body),
            (
                "/v1/integrations/billing/connection",
                "PUT",
                json.dumps({"connection_id": MISSING_ID}).encode(),
            ),
        ):
            head = post_head(
                key, f"Content-Encoding: {encoding}", f"Content-Length: {len(sent)}", path=path, method=method
            )
            status, problem = await raw(h, head, sent)
            assert (status, problem["code"]) == (415, "unsupported_media_type"), problem
            assert "Content-Encoding" in problem["detail"]
        assert h.publisher.sent == [] and h.repo.docs == {}


async def test_an_identity_content_encoding_is_read_as_plain_json() -> None:
    async with harness() as h:
        key = await h.key()
        headers = {**auth(key), "Content-Encoding": "identity"}
        r = await h.client.post("/v1/connections", json=CREATE_BODY, headers=headers)
        assert r.status == 202, await r.text()


async def test_a_body_that_does_not_match_its_framing_is_a_400_problem_not_a_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(views, "BODY_READ_SECONDS", 0.5)
    async with harness() as h:
        key = await h.key()
        # the body arrives after the headers, so the view is already reading when the parser gives up on it
        for extra, body in (
            ("Transfer-Encoding: chunked", BODY),
            (f"Content-Length: {len(BODY) + 10}", BODY),
        ):
            status, problem = await raw(h, post_head(key, extra), body, pause=0.1)
            assert (status, problem["code"]) == (400, "invalid_body"), problem
            assert "Content-Length or Transfer-Encoding" in problem["detail"]
        assert h.repo.docs == {}


async def test_a_request_the_http_parser_refuses_is_a_warning_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with harness() as h:
        key = await h.key()
        reader, writer = await asyncio.open_connection(h.client.server.host, h.client.server.port)
        writer.write(post_head(key, "Transfer-Encoding: chunked").encode() + b"\r\n\r\n" + BODY)
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    assert status_line.split()[1] == b"400"  # aiohttp's own answer: no view saw the request
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


async def test_a_declared_content_length_over_the_limit_is_refused_at_once_without_reading() -> None:
    async with harness() as h:
        key = await h.key()
        for path, method in (("/v1/connections", "POST"), ("/v1/integrations/billing/connection", "PUT")):
            head = post_head(key, "Content-Length: 999999999999", path=path, method=method)
            status, problem = await raw(h, head, b"{", within=3.0)  # used to wait for the rest for minutes
            assert (status, problem["code"]) == (413, "payload_too_large"), problem
            head = post_head(key, f"Content-Length: {64 * 1024 + 1}", path=path, method=method)
            status, problem = await raw(h, head, b"{", within=3.0)
            assert (status, problem["code"]) == (413, "payload_too_large"), problem


@pytest.mark.parametrize(
    "bad",
    [
        "nope",  # used to be a 404 connection_not_found
        "%ff",
        "con_x",
        "con_000000000000DEADBEEF00",
        "con_000000000000deadbeef0",
        MISSING_ID + "0",
        "conn-7f3a",
    ],
)
async def test_every_connection_id_of_another_shape_is_a_400_or_422_before_any_lookup(bad: str) -> None:
    async with harness() as h:
        key = await h.key()
        for method, path in (
            ("GET", f"/v1/connections/{bad}"),
            ("DELETE", f"/v1/connections/{bad}"),
            ("GET", f"/v1/connections/{bad}/token"),
        ):
            r = await h.client.request(method, path, headers=auth(key))
            body = await r.json()
            assert (r.status, body["code"]) == (400, "invalid_parameter"), (method, path, body)
        r = await h.client.put(
            "/v1/integrations/billing/connection", json={"connection_id": bad}, headers=auth(key)
        )
        body = await r.json()
        assert (r.status, body["code"]) == (422, "validation_failed"), body
        assert [e["loc"] for e in body["errors"]] == [["connection_id"]]


async def test_a_well_shaped_connection_id_that_does_not_exist_is_a_404() -> None:
    async with harness() as h:
        key = await h.key()
        for method, path in (
            ("GET", f"/v1/connections/{MISSING_ID}"),
            ("DELETE", f"/v1/connections/{MISSING_ID}"),
            ("GET", f"/v1/connections/{MISSING_ID}/token"),
        ):
            r = await h.client.request(method, path, headers=auth(key))
            assert (await r.json())["code"] == "connection_not_found"
        r = await h.client.put(
            "/v1/integrations/billing/connection", json={"connection_id": MISSING_ID}, headers=auth(key)
        )
        assert (await r.json())["code"] == "connection_not_found"


async def _make(h: Harness, key: str) -> dict[str, str]:
    """Seven connections, one or two in each state; their ids by name."""
    ids: dict[str, str] = {}
    for name in ("p1", "a1", "a2", "f1", "d1", "x1", "p2"):
        h.clock.advance(1)
        r = await h.client.post("/v1/connections", json={**CREATE_BODY, "name": name}, headers=auth(key))
        ids[name] = (await r.json())["id"]
    for name in ("a1", "a2", "d1", "x1"):
        await h.activate(ids[name])
    r = await h.client.delete(f"/v1/connections/{ids['d1']}", headers=auth(key))
    assert r.status == 202
    h.repo.docs[ids["f1"]]["status"] = "failed"
    h.repo.docs[ids["x1"]]["status"] = "deleted"
    return ids


async def _all_pages(h: Harness, key: str, query: str, limit: int) -> list[str]:
    seen: list[str] = []
    url = f"/v1/connections?limit={limit}&{query}"
    while url:
        r = await h.client.get(url, headers=auth(key))
        page = await r.json()
        assert r.status == 200, page
        assert len(page["items"]) <= limit
        seen += [c["id"] for c in page["items"]]
        url = (
            f"/v1/connections?limit={limit}&{query}&cursor={page['next_cursor']}"
            if page["next_cursor"]
            else ""
        )
    return seen


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("status=active", ["a1", "a2"]),
        ("status=pending,active", ["p1", "a1", "a2", "p2"]),
        ("status=pending&status=active", ["p1", "a1", "a2", "p2"]),
        ("status=failed", ["f1"]),
        ("status=deleting,deleted", ["d1", "x1"]),
        ("status=active,pending,failed,deleting", ["p1", "a1", "a2", "f1", "d1", "p2"]),
        ("", ["p1", "a1", "a2", "f1", "d1", "x1", "p2"]),
    ],
)
async def test_the_list_filters_by_status_and_pages_through_the_filtered_set(
    query: str, names: list[str]
) -> None:
    async with harness() as h:
        key = await h.key()
        ids = await _make(h, key)
        for limit in (1, 2, 200):
            assert await _all_pages(h, key, query, limit) == [ids[n] for n in names], (query, limit)


@pytest.mark.parametrize(
    "query", ["status=", "status=gone", "status=active,", "status=Active", "limit=1&limit=2"]
)
async def test_a_bad_status_filter_is_a_422_naming_the_parameter(query: str) -> None:
    async with harness() as h:
        key = await h.key()
        r = await h.client.get(f"/v1/connections?{query}", headers=auth(key))
        body = await r.json()
        assert (r.status, body["code"]) == (422, "validation_failed"), body
        assert body["errors"][0]["loc"][0] == query.split("=")[0]
