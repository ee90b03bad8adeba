"""No token, API key or sealed token reaches the Manager's logs (tokens here are not Salesforce-shaped,
so the redaction step cannot hide a leak: the code itself must never log them)."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
import structlog
from manager.http.state import COMPONENTS

from shared.logging import configure_logging
from tests.unit.manager_http_harness import CREATE_BODY, auth, harness
from tests.unit.manager_world import created_reply, refreshed_reply

pytestmark = pytest.mark.unit

FIRST = "plainFirstTokenValueThatMustNeverBeLogged"
SECOND = "plainSecondTokenValueThatMustNeverBeLogged"


@pytest.fixture
def captured() -> Any:
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("manager", "DEBUG", json=True, stream=buffer)
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_tokens_keys_and_sealed_tokens_never_reach_the_logs(captured: io.StringIO) -> None:
    async with harness() as h:
        key = await h.key()
        created = await (await h.client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))).json()
        reply = created_reply(created["id"], h.keys.sealer, h.clock(), token=FIRST)
        await h.app[COMPONENTS].connections.record_reply(reply)

        async def answer(command: Any) -> Any:
            return refreshed_reply(command.connection_id, h.keys.sealer, h.clock(), token=SECOND)

        h.rpc.answer = answer
        url = f"/v1/connections/{created['id']}/token"
        assert (await (await h.client.get(url, headers=auth(key))).json())["access_token"] == FIRST
        r = await h.client.get(url + "?force_refresh=true", headers=auth(key))
        assert (await r.json())["access_token"] == SECOND
        await h.client.get(url, headers=auth(key[:-4] + "AAAA"))
        await h.client.get(url, headers={"Authorization": f"Token {key}"})

    text = captured.getvalue()
    assert "connection recorded" in text and "token refreshed" in text  # the logs were captured
    for secret in (FIRST, SECOND, key, key.split("_", 2)[2], reply.sealed_token.ciphertext[:40]):
        assert secret not in text
    stored = h.repo.docs[created["id"]]["token"]["ciphertext"]
    assert stored not in text
