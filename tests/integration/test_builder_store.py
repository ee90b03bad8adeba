"""The Builder's MongoDB store on the real MongoDB-wire server: encryption at rest, leases, single-use states."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from builder.mongo_store import MongoStore
from builder.salesforce.certs import new_credential
from builder.store import ConnectionRecord, IssuedReply, OrgAuthorization, PendingAuthorization, StateRejected

from shared.crypto import Keyring, generate_key

pytestmark = pytest.mark.integration
ORG = "00D000000000001AAA"


@pytest.fixture
async def store(mongo_db: Any) -> MongoStore:
    s = MongoStore(mongo_db, Keyring.parse(f"k1:{generate_key()}"))
    await s.ensure_indexes()
    return s


def org(**kw: Any) -> OrgAuthorization:
    values: dict[str, Any] = {
        "org_id": ORG, "user_id": "005x", "instance_url": "https://acme.my.salesforce.com",
        "login_url": "https://login.salesforce.com", "is_sandbox": False, "scopes": ["api", "refresh_token"],
        "refresh_token": "5Aep861-refresh-secret", "access_token": "00D000000000001!access-secret",
    }  # fmt: skip
    values.update(kw)
    return OrgAuthorization(**values)


async def test_org_tokens_are_encrypted_at_rest_and_found_by_15_or_18_character_id(
    store: MongoStore, mongo_db: Any
) -> None:
    await store.save_authorization(org())
    raw = await mongo_db.orgs.find_one({})
    assert "5Aep861-refresh-secret" not in str(raw) and "access-secret" not in str(raw)
    found = await store.get_org(ORG[:15])
    assert found is not None and found.refresh_token == "5Aep861-refresh-secret"
    assert found.authorized_at is not None and found.authorized_at.tzinfo is not None
    copied = {**raw, "_id": "00D000000000002"}
    await mongo_db.orgs.insert_one(copied)
    with pytest.raises(Exception, match="failed authentication"):
        await store.get_org("00D000000000002")


async def test_a_refresh_result_is_stored_only_over_the_version_it_replaced(store: MongoStore) -> None:
    saved = await store.save_authorization(org())
    assert await store.save_refreshed_tokens(
        ORG, expected_version=saved.token_version, access_token="00Dnew!a", refresh_token="5Aep-rotated",
        instance_url="https://acme.my.salesforce.com",
    )  # fmt: skip
    assert not await store.save_refreshed_tokens(
        ORG, expected_version=saved.token_version, access_token="00Dstale!a", refresh_token=None,
        instance_url="https://acme.my.salesforce.com",
    )  # fmt: skip
    current = await store.get_org(ORG)
    assert current is not None
    assert (current.access_token, current.refresh_token) == ("00Dnew!a", "5Aep-rotated")
    await store.mark_needs_reauth(ORG, "revoked")
    again = await store.get_org(ORG)
    assert again is not None and again.status.value == "needs_reauth" and again.access_token is None


async def test_a_lease_has_one_holder_until_it_is_released_or_expires(store: MongoStore) -> None:
    results = await asyncio.gather(*(store.try_lease("refresh:x", f"h{i}", 30) for i in range(5)))
    assert sum(results) == 1
    winner = f"h{results.index(True)}"
    assert await store.try_lease("refresh:x", winner, 30), "the holder may extend it"
    await store.release_lease("refresh:x", "someone-else")
    assert not await store.try_lease("refresh:x", "late", 30)
    await store.release_lease("refresh:x", winner)
    assert await store.try_lease("refresh:x", "late", 0.2)
    await asyncio.sleep(0.3)
    assert await store.try_lease("refresh:x", "after-expiry", 30)


async def test_an_oauth_state_is_single_use_and_expires(store: MongoStore) -> None:
    now = datetime.now(UTC)
    await store.save_oauth_state(
        "s1", PendingAuthorization("verifier-1", "https://login", False, now + timedelta(60))
    )
    pending = await store.consume_oauth_state("s1", now)
    assert pending.code_verifier == "verifier-1"
    with pytest.raises(StateRejected, match="already used"):
        await store.consume_oauth_state("s1", now)
    await store.save_oauth_state("s2", PendingAuthorization("v2", "https://login", True, now - timedelta(1)))
    with pytest.raises(StateRejected, match="expired"):
        await store.consume_oauth_state("s2", now)
    with pytest.raises(StateRejected, match="unknown"):
        await store.consume_oauth_state("never", now)


async def test_a_connection_keeps_its_private_key_and_last_token_encrypted(
    store: MongoStore, mongo_db: Any
) -> None:
    credential = new_credential("sfc_c1")
    record = ConnectionRecord(
        connection_id="c1", org_id=ORG, username="a+b@x.com", admin_email="a@x.com", label="L",
        requested_kind="auto", full_name="sfc_c1_1", permission_set_name="sfc_c1_1",
        certificate_pem=credential.certificate_pem, private_key_pem=credential.private_key_pem,
        last_access_token="00D000000000001!minted-secret",
        reply=IssuedReply("mgr1", "sealed-ciphertext", datetime.now(UTC), "https://acme.my.salesforce.com"),
    )  # fmt: skip
    await store.save_connection(record)
    raw = await mongo_db.connections.find_one({"_id": "c1"})
    assert "PRIVATE KEY" not in str(raw) and "minted-secret" not in str(raw)
    loaded = await store.get_connection("c1")
    assert loaded is not None
    assert loaded.private_key_pem == credential.private_key_pem
    assert loaded.last_access_token == "00D000000000001!minted-secret"
    assert loaded.reply is not None and loaded.reply.issued_at.tzinfo is not None
    assert "minted-secret" not in repr(loaded) and "PRIVATE" not in repr(loaded)


async def test_a_record_saved_twice_keeps_its_creation_time(store: MongoStore) -> None:
    record = ConnectionRecord(
        connection_id="c2", org_id=ORG, username="u@x.com", admin_email="a@x.com", label="L",
        requested_kind="auto", full_name="sfc_c2_1", permission_set_name="sfc_c2_1", certificate_pem="PEM",
    )  # fmt: skip
    await store.save_connection(record)
    assert record.created_at is not None and record.updated_at == record.created_at
    first = await store.get_connection("c2")
    assert first is not None and first.created_at is not None
    await asyncio.sleep(0.05)
    record.label = "L2"
    await store.save_connection(record)
    second = await store.get_connection("c2")
    assert second is not None and second.label == "L2"
    assert second.created_at == first.created_at
    assert second.updated_at is not None and second.updated_at > first.created_at
