"""The Manager on the real broker and MongoDB-wire server, with a Builder double speaking the contract."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bson import CodecOptions
from bson.raw_bson import RawBSONDocument

from shared.amqp import H_REASON, Publisher, connect
from shared.contracts import (
    CommandFailed,
    ConnectionCreated,
    CreateConnection,
    DeleteConnection,
    ErrorCode,
    RefreshConnectionToken,
    utcnow,
)
from tests.integration.manager_builder_double import INSTANCE_URL
from tests.integration.manager_stack import CREATE_BODY, ManagerStack, auth, eventually, manager_stack
from tests.unit.manager_world import created_reply

pytestmark = pytest.mark.integration
__all__ = ["manager_stack"]


async def test_create_reply_active_token_through_the_real_broker_and_database(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    client = await s.start_app()
    key = await s.api_key()
    conn = await s.create_active(client, key, "acme-prod")

    [create] = s.builder.commands(CreateConnection)
    _, delivery = s.builder.received[0]
    assert create.connection_id == conn["id"]
    assert create.recipient_key_id == s.keys.opener.active_kid
    assert delivery.reply_to == s.topology.replies_queue
    assert conn["app"]["kind"] == "external_client_app"
    assert conn["instance_url"] == INSTANCE_URL

    r = await client.get(f"/v1/connections/{conn['id']}/token", headers=auth(key))
    token = await r.json()
    assert r.status == 200
    assert token["access_token"] == s.builder.minted[0]
    assert token["instance_url"] == INSTANCE_URL and token["token_type"] == "Bearer"

    await client.put(
        "/v1/integrations/billing-sync/connection", json={"connection_id": conn["id"]}, headers=auth(key)
    )
    r = await client.get("/v1/integrations/billing-sync/token", headers=auth(key))
    assert (await r.json())["access_token"] == s.builder.minted[0]

    r = await client.delete(f"/v1/connections/{conn['id']}", headers=auth(key))
    assert r.status == 202

    async def deleted() -> bool:
        body = await (await client.get(f"/v1/connections/{conn['id']}", headers=auth(key))).json()
        return body["status"] == "deleted"

    await eventually(deleted, what="connection deleted")
    assert [c.connection_id for c in s.builder.commands(DeleteConnection)] == [conn["id"]]


async def test_a_failure_reply_is_recorded_as_failed_with_its_code_and_message(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    s.builder.fail_usernames["ghost@acme.com"] = ErrorCode.USER_NOT_FOUND
    client = await s.start_app()
    key = await s.api_key()
    body = {**CREATE_BODY, "salesforce_username": "ghost@acme.com"}
    cid = (await (await client.post("/v1/connections", json=body, headers=auth(key))).json())["id"]

    async def failed() -> dict[str, Any] | None:
        got = await (await client.get(f"/v1/connections/{cid}", headers=auth(key))).json()
        return got if got["status"] == "failed" else None

    got = await eventually(failed, what="connection failed")
    assert got["error"]["code"] == "user_not_found"
    assert got["error"]["message"] == "user_not_found for ghost@acme.com"


async def _publish_reply(s: ManagerStack, reply: Any) -> None:
    conn = await connect(s.amqp_url, name="test-reply-publisher")
    try:
        publisher = Publisher(conn, s.topology, app_id="builder")
        await publisher.start()
        await publisher.send_reply(reply, reply_to=s.topology.replies_queue, correlation_id="test")
    finally:
        await conn.close()


async def test_duplicate_replies_are_harmless(manager_stack: ManagerStack) -> None:
    s = manager_stack
    client = await s.start_app()
    key = await s.api_key()
    conn = await s.create_active(client, key, "acme-prod")
    before = await s.db.connections.find_one({"_id": conn["id"]})

    duplicate = created_reply(
        conn["id"], s.keys.sealer, before["token"]["issued_at"], token="00D000000000001!other"
    )
    await _publish_reply(s, duplicate)
    failure = CommandFailed(
        connection_id=conn["id"],
        command_type=CreateConnection.message_type,
        error={"code": "internal_error", "message": "late failure"},
    )
    await _publish_reply(s, failure)

    async def processed() -> bool:
        # both, not only the last one published: aiormq runs deliveries as tasks, so the failure can be
        # recorded before the duplicate ConnectionCreated is
        text = await (await client.get("/metrics")).text()
        return all(
            f'sfconnect_manager_replies_total{{outcome="ignored",type="{kind}"}} 1.0' in text
            for kind in (ConnectionCreated.message_type, CommandFailed.message_type)
        )

    await eventually(processed, what="both duplicates processed")
    after = await s.db.connections.find_one({"_id": conn["id"]})
    assert after == before
    r = await client.get(f"/v1/connections/{conn['id']}/token", headers=auth(key))
    assert (await r.json())["access_token"] == s.builder.minted[0]


async def test_a_reply_for_an_unknown_connection_is_dead_lettered(manager_stack: ManagerStack) -> None:
    s = manager_stack
    await s.start_app()
    await _publish_reply(s, created_reply("con_nobody", s.keys.sealer, utcnow()))

    conn = await connect(s.amqp_url, name="test-dead-letter-reader")
    try:
        channel = await conn.channel()
        queue = await s.topology.declare_queue(channel, s.topology.dead_queue)

        async def dead_letter() -> Any:
            return await queue.get(fail=False, timeout=5)

        message = await eventually(dead_letter, what="dead letter")
        await message.ack()
        assert message.type == ConnectionCreated.message_type
        assert message.headers[H_REASON] == "connection_not_found"
        assert b"con_nobody" in message.body
    finally:
        await conn.close()


async def test_fifty_concurrent_forced_refreshes_send_exactly_one_refresh_command(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    s.builder.refresh_delay = 0.2
    client = await s.start_app()
    key = await s.api_key()
    conn = await s.create_active(client, key, "acme-prod")
    url = f"/v1/connections/{conn['id']}/token?force_refresh=true"

    responses = await asyncio.gather(*(client.get(url, headers=auth(key)) for _ in range(50)))
    bodies = [await r.json() for r in responses]
    assert [r.status for r in responses] == [200] * 50
    assert len(s.builder.commands(RefreshConnectionToken)) == 1
    assert {b["access_token"] for b in bodies} == {s.builder.minted[1]}


async def test_two_manager_instances_coalesce_fifty_forced_refreshes_into_one_command(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    s.builder.refresh_delay = 0.3
    a = await s.start_app("mgr-a")
    b = await s.start_app("mgr-b")
    key = await s.api_key()
    conn = await s.create_active(a, key, "acme-prod")
    url = f"/v1/connections/{conn['id']}/token?force_refresh=true"

    calls = [client.get(url, headers=auth(key)) for _ in range(25) for client in (a, b)]
    responses = await asyncio.gather(*calls)
    bodies = [await r.json() for r in responses]
    assert [r.status for r in responses] == [200] * 50, bodies
    refreshes = s.builder.commands(RefreshConnectionToken)
    assert len(refreshes) == 1
    assert {b["access_token"] for b in bodies} == {s.builder.minted[1]}
    doc = await s.db.connections.find_one({"_id": conn["id"]})
    assert doc["refresh_lease"] is None


async def test_two_manager_instances_share_one_refused_refresh_instead_of_each_asking_again(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    s.builder.refresh_delay = 0.3
    a = await s.start_app("mgr-a")
    b = await s.start_app("mgr-b")
    key = await s.api_key()
    conn = await s.create_active(a, key, "acme-prod")
    s.builder.fail_refreshes[conn["id"]] = ErrorCode.USER_INACTIVE
    url = f"/v1/connections/{conn['id']}/token?force_refresh=true"

    responses = await asyncio.gather(
        *(client.get(url, headers=auth(key)) for _ in range(10) for client in (a, b))
    )
    bodies = [await r.json() for r in responses]
    assert [r.status for r in responses] == [502] * 20, bodies
    assert {(p["code"], p["cause"]) for p in bodies} == {("token_refresh_failed", "user_inactive")}
    assert len(s.builder.commands(RefreshConnectionToken)) == 1


async def test_a_pending_connection_unanswered_past_the_deadline_is_sent_again_by_the_sweeper(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    client = await s.start_app(pending_republish_seconds=1, sweeper_interval_seconds=0.3)
    key = await s.api_key()

    original_create = s.builder._create

    async def drop_first(cmd: CreateConnection, delivery: Any) -> Any:
        if not s.builder.commands(CreateConnection):
            s.builder.silent_once.add(cmd.connection_id)
        return await original_create(cmd, delivery)

    s.builder._create = drop_first  # type: ignore[method-assign]
    # the consumer holds the handler map built at start: restart it with the new handler
    await s.builder.stop()
    await s.builder.start()
    cid = (await (await client.post("/v1/connections", json=CREATE_BODY, headers=auth(key))).json())["id"]

    async def active() -> bool:
        body = await (await client.get(f"/v1/connections/{cid}", headers=auth(key))).json()
        return body["status"] == "active"

    await eventually(active, what="active after the sweeper re-published")
    creates = s.builder.commands(CreateConnection)
    assert len(creates) == 2 and creates[0] == creates[1]
    ids = [d.message_id for c, d in s.builder.received if isinstance(c, CreateConnection)]
    assert ids[0] != ids[1]


async def test_stored_documents_hold_no_plaintext_token_anywhere(manager_stack: ManagerStack) -> None:
    s = manager_stack
    client = await s.start_app()
    key = await s.api_key()
    for i in range(3):
        conn = await s.create_active(client, key, f"conn-{i}")
        await client.get(f"/v1/connections/{conn['id']}/token?force_refresh=true", headers=auth(key))
    assert len(s.builder.minted) == 6

    raw_docs: list[bytes] = []
    for name in await s.db.list_collection_names():
        collection = s.db.get_collection(name, codec_options=CodecOptions(document_class=RawBSONDocument))
        raw_docs += [doc.raw async for doc in collection.find({})]
    assert len(raw_docs) >= 4
    blob = b"".join(raw_docs)
    for token in s.builder.minted:
        assert token.encode() not in blob
        assert token.split("!", 1)[1].encode() not in blob
    assert key.encode() not in blob and key.split("_", 2)[2].encode() not in blob


async def test_a_refused_refresh_is_recorded_on_the_active_connection_until_a_refresh_succeeds(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    a = await s.start_app("mgr-a")
    key = await s.api_key()
    conn = await s.create_active(a, key, "acme-prod")
    first_token = s.builder.minted[0]
    s.builder.fail_refreshes[conn["id"]] = ErrorCode.USER_INACTIVE

    r = await a.get(f"/v1/connections/{conn['id']}/token?force_refresh=true", headers=auth(key))
    body = await r.json()
    assert r.status == 502 and body["code"] == "token_refresh_failed" and body["cause"] == "user_inactive"

    b = await s.start_app("mgr-b")  # what operators see does not depend on the replica they ask
    for client in (a, b):
        shown = await (await client.get(f"/v1/connections/{conn['id']}", headers=auth(key))).json()
        assert shown["status"] == "active" and shown["error"] is None
        assert shown["last_refresh_error"]["code"] == "user_inactive"
        assert "cannot log in" in shown["last_refresh_error"]["message"]
        assert shown["last_refresh_error"]["at"]
    listed = await (await b.get("/v1/connections", headers=auth(key))).json()
    assert listed["items"][0]["last_refresh_error"]["code"] == "user_inactive"
    r = await b.get(f"/v1/connections/{conn['id']}/token", headers=auth(key))
    assert r.status == 200 and (await r.json())["access_token"] == first_token  # the token is kept

    del s.builder.fail_refreshes[conn["id"]]
    r = await b.get(f"/v1/connections/{conn['id']}/token?force_refresh=true", headers=auth(key))
    assert r.status == 200 and (await r.json())["access_token"] == s.builder.minted[-1] != first_token
    shown = await (await a.get(f"/v1/connections/{conn['id']}", headers=auth(key))).json()
    assert shown["status"] == "active" and shown["last_refresh_error"] is None
    assert len(s.builder.commands(RefreshConnectionToken)) == 2


async def _crashed_create(
    s: ManagerStack, client: Any, plaintext_key: str, idem: str, *, recorded: bool
) -> str | None:
    """What a Manager killed in the middle of ``POST /v1/connections`` with ``Idempotency-Key`` leaves:
    the key claimed ``in_progress`` and, when it got that far, the connection recorded under it."""
    from manager.http.schemas import CreateConnectionRequest
    from manager.http.state import COMPONENTS
    from manager.idempotency import MongoIdempotencyKeys, fingerprint, scoped_key
    from manager.ports import utc_now_ms
    from manager.services import NewConnection

    ref = scoped_key(plaintext_key.split("_")[1], idem)
    body = CreateConnectionRequest.model_validate(CREATE_BODY)
    body_fp = fingerprint(body.model_dump(mode="json"))
    now = utc_now_ms()
    claimed = await MongoIdempotencyKeys(s.db).begin(ref, fingerprint=body_fp, now=now, stale_before=now)
    assert claimed is None
    if not recorded:
        return None
    new = NewConnection(
        name=body.name,
        org_id=body.org_id,
        salesforce_username=body.salesforce_username,
        admin_email=str(body.admin_email),
        label=body.name,
        app_kind=body.app_kind.value,
    )
    conn = await client.app[COMPONENTS].connections.create(
        new, idempotency_ref=ref, idempotency_fingerprint=body_fp
    )
    return str(conn.id)


async def test_a_retry_after_a_crash_that_recorded_the_connection_replays_it_instead_of_a_name_clash(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    client = await s.start_app()
    key = await s.api_key()
    recorded_id = await _crashed_create(s, client, key, "retry-after-crash", recorded=True)
    for _ in range(2):  # the retry answers with the recorded connection, and so does the next one
        r = await client.post(
            "/v1/connections", json=CREATE_BODY, headers={**auth(key), "Idempotency-Key": "retry-after-crash"}
        )
        body = await r.json()
        assert r.status == 202, body
        assert body["id"] == recorded_id and r.headers["Idempotent-Replayed"] == "true"
    assert await s.db.connections.count_documents({}) == 1

    async def active() -> bool:
        got = await (await client.get(f"/v1/connections/{recorded_id}", headers=auth(key))).json()
        return bool(got["status"] == "active")

    await eventually(active, what="the recorded connection went on to active")


async def test_after_a_crash_and_the_key_record_expiring_another_body_is_refused_not_replayed(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    client = await s.start_app()
    key = await s.api_key()
    recorded_id = await _crashed_create(s, client, key, "expired-key", recorded=True)
    await s.db.idempotency_keys.delete_many({})  # what the TTL index does after a day
    headers = {**auth(key), "Idempotency-Key": "expired-key"}
    r = await client.post("/v1/connections", json={**CREATE_BODY, "name": "other-name"}, headers=headers)
    problem = await r.json()
    assert r.status == 422 and problem["code"] == "idempotency_key_reused", problem
    assert await s.db.idempotency_keys.count_documents({}) == 0  # the refused claim was given back
    r = await client.post("/v1/connections", json=CREATE_BODY, headers=headers)
    assert r.status == 202 and (await r.json())["id"] == recorded_id


async def test_a_retry_after_a_crash_before_anything_was_recorded_waits_for_the_claim_to_go_stale(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    client = await s.start_app()
    key = await s.api_key()
    await _crashed_create(s, client, key, "died-early", recorded=False)
    r = await client.post(
        "/v1/connections", json=CREATE_BODY, headers={**auth(key), "Idempotency-Key": "died-early"}
    )
    problem = await r.json()
    assert r.status == 409 and problem["code"] == "idempotency_key_in_progress", problem
    assert "retried after 60s" in problem["detail"]
    assert await s.db.connections.count_documents({}) == 0


async def test_a_refresh_reply_that_arrives_after_its_call_gave_up_is_still_stored(
    manager_stack: ManagerStack,
) -> None:
    s = manager_stack
    client = await s.start_app(rpc_deadline_seconds=1)
    key = await s.api_key()
    conn = await s.create_active(client, key, "acme-prod")
    s.builder.refresh_delay = 1.5  # the Builder answers after the Manager's RPC deadline

    r = await client.get(f"/v1/connections/{conn['id']}/token?force_refresh=true", headers=auth(key))
    assert r.status == 503, await r.json()

    async def late_token_kept() -> bool:
        doc = await s.db.connections.find_one({"_id": conn["id"]})
        return bool(doc["token_generation"] == 2)

    await eventually(late_token_kept, what="the late refresh reply stored")
    r = await client.get(f"/v1/connections/{conn['id']}/token", headers=auth(key))
    assert (await r.json())["access_token"] == s.builder.minted[1]
    assert len(s.builder.commands(RefreshConnectionToken)) == 1
