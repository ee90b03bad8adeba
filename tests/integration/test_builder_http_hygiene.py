"""What the Builder's HTTP server logs and echoes of what a caller sends: an over-long request line is a
warning that quotes none of it, an error detail quotes at most the start of a caller's value, and an
X-Request-ID is adopted only in a safe shape."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.builder_rig import BuilderRig, builder_rig

pytestmark = pytest.mark.integration

CODE = "aPrx7SecretAuthCodeQ9"


@pytest.fixture
async def rig(mongodb_url: str, mongo_db: Any, amqp_url: str, amqp_prefix: str) -> AsyncIterator[BuilderRig]:
    async with builder_rig(
        mongodb_url=mongodb_url, database=mongo_db.name, amqp_url=amqp_url, prefix=amqp_prefix
    ) as r:
        yield r


async def test_an_over_long_request_line_is_a_warning_that_quotes_nothing_of_it(
    rig: BuilderRig, caplog: pytest.LogCaptureFixture
) -> None:
    url = urlsplit(rig.builder)
    target = f"/v1/salesforce/callback?code={CODE}&state={'a' * 20000}"
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert status_line.split()[1] == b"400"  # aiohttp's own answer: no view saw the request
    await asyncio.sleep(0.1)
    text = rig.logs.getvalue() + caplog.text
    assert CODE not in text and "callback?" not in text and "aaaaaaaa" not in text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
    assert not [line for line in rig.log_lines() if line.get("level") in ("error", "critical")]
    assert any(
        line.get("event") == "malformed request refused by the HTTP parser" for line in rig.log_lines()
    ), text[-2000:]


async def test_a_problem_detail_quotes_at_most_the_start_of_an_invalid_org_id(rig: BuilderRig) -> None:
    org_id = "00D" + "x" * 4997
    async with rig.http.get(f"{rig.builder}/v1/orgs/{org_id}/objects", headers=rig.admin) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["code"] == "invalid_input"
    assert len(body["detail"]) < 250, body["detail"]
    assert org_id[:64] in body["detail"] and org_id[:65] not in body["detail"] and "…" in body["detail"]


@pytest.mark.parametrize("given", ["abc<>", "a" * 129, "two words", "é"])
async def test_an_unsafe_x_request_id_is_replaced_by_a_fresh_one(rig: BuilderRig, given: str) -> None:
    async with rig.http.get(f"{rig.builder}/healthz", headers={"X-Request-ID": given}) as resp:
        assert resp.status == 200
        echoed = resp.headers["X-Request-Id"]
    assert echoed != given and re.fullmatch(r"[0-9a-f]{32}", echoed)


async def test_a_safe_x_request_id_is_adopted(rig: BuilderRig) -> None:
    given = "req-42.a:b_C"
    async with rig.http.get(f"{rig.builder}/healthz", headers={"X-Request-ID": given}) as resp:
        assert resp.headers["X-Request-Id"] == given
