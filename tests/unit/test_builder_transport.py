"""The Transport reads whole bodies from a real socket, however they are chunked, and refuses oversize ones."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from builder.salesforce.errors import ResponseTooLarge, SalesforceApiError
from builder.salesforce.transport import MAX_BODY_BYTES, Transport

pytestmark = pytest.mark.unit
CHUNK = 64 * 1024
# describeGlobal-shaped, about 3 MB: far more than one socket read ever buffers.
BIG = json.dumps(
    {"sobjects": [{"name": f"Object{i}__c", "label": "x" * 200, "keyPrefix": "a0X"} for i in range(12_000)]}
).encode()


async def _stream(request: web.Request) -> web.StreamResponse:
    """Send BIG in chunks with small pauses, chunked transfer encoding (no Content-Length)."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for start in range(0, len(BIG), CHUNK):
        await resp.write(BIG[start : start + CHUNK])
        await asyncio.sleep(0.002)
    await resp.write_eof()
    return resp


async def _declared(request: web.Request) -> web.Response:
    """BIG in one response with its Content-Length."""
    return web.Response(body=BIG, content_type="application/json")


@pytest.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/stream", _stream)
    app.router.add_get("/declared", _declared)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_a_multi_megabyte_body_streamed_in_chunks_arrives_whole(base: str) -> None:
    assert len(BIG) > 2 * 1024 * 1024 < MAX_BODY_BYTES
    async with aiohttp.ClientSession() as session:
        transport = Transport(session, timeout=10)
        resp = await transport.request("GET", f"{base}/stream", operation="describeGlobal")
    assert resp.status == 200
    assert len(resp.text) == len(BIG)
    assert len(json.loads(resp.text)["sobjects"]) == 12_000


@pytest.mark.parametrize("path", ["/stream", "/declared"])
async def test_a_body_above_the_cap_is_refused_with_a_typed_error_not_truncated(base: str, path: str) -> None:
    async with aiohttp.ClientSession() as session:
        transport = Transport(session, timeout=10, max_body_bytes=1024 * 1024)
        with pytest.raises(ResponseTooLarge) as caught:
            await transport.request("GET", f"{base}{path}", operation="describeGlobal")
    error = caught.value
    assert isinstance(error, SalesforceApiError) and not error.retryable
    assert "describeGlobal" in error.message and "larger than 1048576 bytes" in error.message


async def test_a_body_exactly_at_the_cap_is_accepted(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        transport = Transport(session, timeout=10, max_body_bytes=len(BIG))
        resp = await transport.request("GET", f"{base}/stream", operation="describeGlobal")
    assert resp.text.encode() == BIG
