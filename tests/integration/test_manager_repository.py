"""The MongoDB adapters on the real MongoDB-wire server: indexes, compare-and-set, leases, outbox, keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from manager.apikeys import Authenticator, MongoApiKeys, create_api_key, digest_of
from manager.domain import CommandRecord, Connection, ConnectionStatus
from manager.errors import ConcurrentUpdate, IdempotencyKeyInProgress, IdempotencyKeyReused, NameTaken
from manager.idempotency import MongoIdempotencyKeys, StoredResponse, run_once
from manager.ports import utc_now_ms
from manager.repository import MongoConnections, MongoIntegrations, ensure_indexes

pytestmark = pytest.mark.integration


def _conn(cid: str, name: str, now: Any) -> Connection:
    return Connection.new(
        id=cid,
        name=name,
        org_id="00D000000000001EAA",
        salesforce_username="u@acme.com",
        admin_email="a@acme.com",
        label=name,
        app_kind="auto",
        command=CommandRecord(message_id=f"m-{cid}", type="connection.create.v1", recorded_at=now),
        now=now,
    )


@pytest.fixture
async def repo(mongo_db: Any) -> MongoConnections:
    await ensure_indexes(mongo_db)
    return MongoConnections(mongo_db)


async def test_datetimes_come_back_timezone_aware_and_equal(repo: MongoConnections) -> None:
    now = utc_now_ms()
    await repo.add(_conn("con_1", "a", now))
    got = await repo.get("con_1")
    assert got is not None and got.created_at == now and got.created_at.utcoffset() == timedelta(0)
    assert got.command is not None and got.command.recorded_at == now


async def test_names_are_unique_until_the_connection_is_deleted(repo: MongoConnections) -> None:
    now = utc_now_ms()
    await repo.add(_conn("con_1", "acme", now))
    with pytest.raises(NameTaken):
        await repo.add(_conn("con_2", "acme", now))
    c = await repo.get("con_1")
    assert c is not None
    c = c.fail(code="x", message="y", now=now)
    await repo.save(c, expected_version=1)
    c2 = c.begin_deletion(command=CommandRecord("m2", "connection.delete.v1", now), now=now)
    await repo.save(c2, expected_version=2)
    await repo.save(c2.finish_deletion(now=now), expected_version=3)
    await repo.add(_conn("con_3", "acme", now))


async def test_a_save_with_a_stale_version_loses(repo: MongoConnections) -> None:
    now = utc_now_ms()
    await repo.add(_conn("con_1", "a", now))
    c = await repo.get("con_1")
    assert c is not None
    await repo.save(c.fail(code="x", message="first", now=now), expected_version=1)
    with pytest.raises(ConcurrentUpdate):
        await repo.save(c.fail(code="x", message="second", now=now), expected_version=1)
    got = await repo.get("con_1")
    assert got is not None and got.error is not None and got.error.message == "first" and got.version == 2


async def test_only_one_holder_gets_the_refresh_lease_until_it_expires_or_is_released(
    repo: MongoConnections, mongo_db: Any
) -> None:
    now = utc_now_ms()
    await repo.add(_conn("con_1", "a", now))
    assert not await repo.acquire_refresh_lease("con_1", holder="a", until=now, now=now)  # pending: no lease
    await mongo_db.connections.update_one(
        {"_id": "con_1"}, {"$set": {"status": ConnectionStatus.ACTIVE.value}}
    )
    until = now + timedelta(seconds=30)
    assert await repo.acquire_refresh_lease("con_1", holder="a", until=until, now=now)
    assert not await repo.acquire_refresh_lease("con_1", holder="b", until=until, now=now)
    later = now + timedelta(seconds=31)
    assert await repo.acquire_refresh_lease(
        "con_1", holder="b", until=later + timedelta(seconds=30), now=later
    )
    await repo.release_refresh_lease("con_1", holder="a")  # not the holder any more: no effect
    assert not await repo.acquire_refresh_lease("con_1", holder="c", until=later, now=later)
    await repo.release_refresh_lease("con_1", holder="b")
    assert await repo.acquire_refresh_lease("con_1", holder="c", until=later, now=later)


async def test_the_outbox_finds_unpublished_and_overdue_commands_and_one_sweeper_claims_each(
    repo: MongoConnections,
) -> None:
    now = utc_now_ms()
    await repo.add(_conn("con_unpublished", "a", now - timedelta(seconds=60)))
    await repo.add(_conn("con_fresh", "b", now))
    await repo.add(_conn("con_overdue", "c", now - timedelta(seconds=600)))
    await repo.mark_published("con_overdue", "m-con_overdue", at=now - timedelta(seconds=600))
    await repo.add(_conn("con_answered", "d", now - timedelta(seconds=600)))
    await repo.mark_published("con_answered", "m-con_answered", at=now - timedelta(seconds=5))

    due = await repo.due_commands(
        recorded_before=now - timedelta(seconds=10), published_before=now - timedelta(seconds=120), limit=10
    )
    assert [c.id for c in due] == ["con_overdue", "con_unpublished"]
    assert await repo.claim_command("con_overdue", "m-con_overdue", new_message_id="n1", now=now)
    assert not await repo.claim_command("con_overdue", "m-con_overdue", new_message_id="n2", now=now)
    got = await repo.get("con_overdue")
    assert got is not None and got.command is not None
    assert (got.command.message_id, got.command.published_at, got.command.attempts) == ("n1", None, 2)
    assert got.command.publishes == 1  # the claim is an attempt; only a confirmed publish counts here
    assert await repo.mark_published("con_overdue", "n1", at=now)
    got = await repo.get("con_overdue")
    assert got is not None and got.command is not None and got.command.publishes == 2


async def test_pages_filtered_by_status_follow_id_order_through_the_status_index(
    repo: MongoConnections, mongo_db: Any
) -> None:
    now = utc_now_ms()
    states = ["pending", "active", "failed", "active", "deleted", "active", "pending"]
    for i, status in enumerate(states):
        await repo.add(_conn(f"con_{i}", f"n{i}", now))
        await mongo_db.connections.update_one({"_id": f"con_{i}"}, {"$set": {"status": status}})
    active = frozenset({ConnectionStatus.ACTIVE})
    first = await repo.page(limit=2, after=None, statuses=active)
    rest = await repo.page(limit=2, after=first[-1].id, statuses=active)
    assert [c.id for c in first] == ["con_1", "con_3"] and [c.id for c in rest] == ["con_5"]
    two = frozenset({ConnectionStatus.PENDING, ConnectionStatus.FAILED})
    assert [c.id for c in await repo.page(limit=10, after="con_0", statuses=two)] == ["con_2", "con_6"]
    assert len(await repo.page(limit=10, after=None)) == len(states)  # no filter: every state
    indexes = await mongo_db.connections.index_information()
    assert indexes["by_status"]["key"] == [("status", 1), ("_id", 1)]


async def test_rotation_candidates_skip_the_active_key_and_writes_are_compare_and_set(
    repo: MongoConnections, mongo_db: Any
) -> None:
    now = utc_now_ms()
    for cid, ct in [("con_a", "v1.old.AAAA"), ("con_b", "v1.new.BBBB"), ("con_c", "v1.old.CCCC")]:
        await repo.add(_conn(cid, cid, now))
        await mongo_db.connections.update_one({"_id": cid}, {"$set": {"token": {"ciphertext": ct}}})
    items = await repo.tokens_to_rotate(active_kid="new", after=None, limit=10)
    assert [i.connection_id for i in items] == ["con_a", "con_c"]
    assert [
        i.connection_id for i in await repo.tokens_to_rotate(active_kid="new", after="con_a", limit=10)
    ] == ["con_c"]
    await mongo_db.connections.update_one({"_id": "con_c"}, {"$inc": {"version": 1}})  # changed meanwhile
    assert await repo.replace_ciphertext(items[0], "v1.new.ZZZZ")
    assert not await repo.replace_ciphertext(items[1], "v1.new.YYYY")
    assert (await mongo_db.connections.find_one({"_id": "con_c"}))["token"]["ciphertext"] == "v1.old.CCCC"


async def test_integrations_upsert_by_name(mongo_db: Any) -> None:
    integrations = MongoIntegrations(mongo_db)
    now = utc_now_ms()
    first = await integrations.associate("billing", "con_1", now=now)
    second = await integrations.associate("billing", "con_2", now=now + timedelta(seconds=1))
    assert (second.connection_id, second.created_at) == ("con_2", first.created_at)
    assert await integrations.get("nobody") is None


async def test_api_keys_are_found_by_digest_only_and_digests_are_unique(mongo_db: Any) -> None:
    await ensure_indexes(mongo_db)
    keys = MongoApiKeys(mongo_db)
    record, plaintext = await create_api_key(keys, name="ci", scopes=["tokens:read"], now=utc_now_ms())
    doc = await mongo_db.api_keys.find_one({"_id": record.id})
    assert doc["digest"] == digest_of(plaintext) and plaintext not in str(doc)
    assert (await Authenticator(keys).authenticate(plaintext)).id == record.id
    with pytest.raises(Exception, match="duplicate key"):
        await mongo_db.api_keys.insert_one({"_id": "other", "digest": doc["digest"]})


async def test_idempotency_records_replay_refuse_other_bodies_and_block_concurrent_use(mongo_db: Any) -> None:
    await ensure_indexes(mongo_db)
    store = MongoIdempotencyKeys(mongo_db)
    now = utc_now_ms()
    calls = 0

    async def action() -> StoredResponse:
        nonlocal calls
        calls += 1
        return StoredResponse(202, {"id": "con_1"})

    kw: dict[str, Any] = {"now": now, "stale_after": timedelta(seconds=60), "action": action}
    first = await run_once(store, "k", body_fingerprint="f1", **kw)
    again = await run_once(store, "k", body_fingerprint="f1", **kw)
    assert first == again and calls == 1
    with pytest.raises(IdempotencyKeyReused):
        await run_once(store, "k", body_fingerprint="f2", **kw)
    assert (
        await store.begin("busy", fingerprint="f", now=now, stale_before=now - timedelta(seconds=60)) is None
    )
    with pytest.raises(IdempotencyKeyInProgress):
        await run_once(store, "busy", body_fingerprint="f", **kw)
    later = now + timedelta(seconds=61)  # the first holder crashed: its claim goes stale
    taken = await run_once(
        store, "busy", body_fingerprint="f", now=later, stale_after=timedelta(seconds=60), action=action
    )
    assert taken.status == 202


async def test_only_the_same_body_takes_a_stale_idempotency_claim_over(mongo_db: Any) -> None:
    await ensure_indexes(mongo_db)
    store = MongoIdempotencyKeys(mongo_db)
    now = utc_now_ms()
    assert await store.begin("crashed", fingerprint="f1", now=now, stale_before=now) is None
    later = now + timedelta(seconds=61)
    held = await store.begin(
        "crashed", fingerprint="f2", now=later, stale_before=later - timedelta(seconds=60)
    )
    assert held is not None and held.fingerprint == "f1"  # another body: refused (422), not taken over
    assert (
        await store.begin("crashed", fingerprint="f1", now=later, stale_before=later - timedelta(seconds=60))
        is None
    )
    assert (await mongo_db.idempotency_keys.find_one({"_id": "crashed"}))["fingerprint"] == "f1"


async def test_a_connection_keeps_the_body_fingerprint_of_its_idempotency_key(repo: MongoConnections) -> None:
    now = utc_now_ms()
    conn = _conn("con_1", "acme", now)
    await repo.add(conn, idempotency_ref="ref-1", idempotency_fingerprint="f1")
    await repo.save(conn.fail(code="x", message="y", now=now), expected_version=1)  # later saves keep it
    found = await repo.find_by_idempotency_ref("ref-1")
    assert found is not None and found[0].id == "con_1" and found[1] == "f1"
    assert await repo.find_by_idempotency_ref("ref-2") is None
