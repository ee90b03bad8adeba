"""Key rotation on the real database while the Manager serves token reads and refreshes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from manager.repository import MongoConnections
from manager.rotation import rotate_keys

from shared.crypto import Keyring, generate_key
from tests.integration.manager_stack import ManagerStack, auth, manager_stack

pytestmark = pytest.mark.integration
__all__ = ["manager_stack"]


async def test_rotation_while_serving_keeps_every_token_readable_and_ends_on_the_new_key(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    old = await s.start_app("mgr-old")
    key = await s.api_key()
    conns = [await s.create_active(old, key, f"rot-{i}") for i in range(12)]
    expected: dict[str, str] = {}
    for c in conns:
        expected[c["id"]] = (
            await (await old.get(f"/v1/connections/{c['id']}/token", headers=auth(key))).json()
        )["access_token"]

    # roll out the new keyring first (new key first, old key kept), then rotate while it serves
    both = f"k2:{generate_key()},{s.keys.encryption_entry}"
    new = await s.start_app("mgr-new", encryption_keys=both)
    refreshed = {c["id"] for c in conns[:3]}
    failures: list[Any] = []
    reads = 0
    reads_during_rotation = 0
    rotating = False
    done = asyncio.Event()

    async def serve() -> None:
        nonlocal reads, reads_during_rotation
        while not done.is_set():
            for c in conns:
                force = "?force_refresh=true" if c["id"] in refreshed else ""
                r = await new.get(f"/v1/connections/{c['id']}/token{force}", headers=auth(key))
                body = await r.json()
                reads += 1
                reads_during_rotation += rotating
                if r.status != 200:
                    failures.append(body)
                elif c["id"] not in refreshed and body["access_token"] != expected[c["id"]]:
                    failures.append(("wrong token", c["id"]))

    async def rotate() -> Any:
        nonlocal rotating
        try:
            await asyncio.sleep(0.05)
            rotating = True
            try:
                return await rotate_keys(MongoConnections(s.db), Keyring.parse(both), batch_size=3)
            finally:
                rotating = False
        finally:
            await asyncio.sleep(0.1)
            done.set()

    readers = [asyncio.create_task(serve()) for _ in range(3)]
    report = await rotate()
    await asyncio.gather(*readers)

    assert failures == []
    assert reads >= len(conns)
    assert reads_during_rotation >= 3, "the reads must overlap the rotation, not only precede or follow it"
    assert report.failed == 0 and report.rotated >= len(conns) - len(refreshed)
    assert (report.remaining, report.complete) == (0, True)
    docs = [d async for d in s.db.connections.find({})]
    assert len(docs) == len(conns)
    assert all(d["token"]["ciphertext"].startswith("v1.k2.") for d in docs)
    for c in conns:
        r = await new.get(f"/v1/connections/{c['id']}/token", headers=auth(key))
        assert r.status == 200
        if c["id"] not in refreshed:
            assert (await r.json())["access_token"] == expected[c["id"]]
    again = await rotate_keys(MongoConnections(s.db), Keyring.parse(both), batch_size=3)
    assert (again.rotated, again.failed, again.remaining) == (0, 0, 0)


async def test_rotation_reports_tokens_it_cannot_read_and_still_rotates_the_rest(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    client = await s.start_app()
    key = await s.api_key()
    good = await s.create_active(client, key, "good")
    bad = await s.create_active(client, key, "bad")
    await s.db.connections.update_one({"_id": bad["id"]}, {"$set": {"token.ciphertext": "v1.gone.AAAA"}})

    keys = Keyring.parse(f"k2:{generate_key()},{s.keys.encryption_entry}")
    report = await rotate_keys(MongoConnections(s.db), keys, batch_size=1)
    assert (report.rotated, report.failed, report.remaining, report.complete) == (1, 1, 1, False)
    doc = await s.db.connections.find_one({"_id": good["id"]})
    assert doc["token"]["ciphertext"].startswith("v1.k2.")


@pytest.mark.parametrize("batch_size", [0, -1])
async def test_rotation_refuses_a_batch_size_below_one(mongo_db: Any, batch_size: int) -> None:
    from shared.errors import InvalidInput

    keyring = Keyring.parse(f"k1:{generate_key()}")
    with pytest.raises(InvalidInput, match="at least 1"):
        await rotate_keys(MongoConnections(mongo_db), keyring, batch_size=batch_size)
