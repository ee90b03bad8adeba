"""Connection use cases over fakes: create, replies, delete, the outbox sweep, integrations."""

from __future__ import annotations

import pytest
from manager.domain import ACCESS_TOKEN_FIELD, ConnectionStatus
from manager.errors import ConnectionNotActive, ConnectionNotFound, InvalidTransition, NameTaken

from shared.amqp import BrokerUnavailable
from shared.contracts import (
    CommandFailed,
    ConnectionDeleted,
    CreateConnection,
    DeleteConnection,
    ErrorCode,
    ErrorDetail,
    SealedToken,
)
from tests.unit.manager_fakes import make_keys
from tests.unit.manager_world import (
    REPLIES_QUEUE,
    SAMPLE_TOKEN,
    active_connection,
    created_reply,
    make_world,
    new_connection,
)

pytestmark = pytest.mark.unit


async def test_create_records_a_pending_connection_and_publishes_create_connection_to_the_builder() -> None:
    w = make_world()
    conn = await w.connections.create(new_connection(), request_id="req-1")

    assert conn.status is ConnectionStatus.PENDING
    [sent] = w.publisher.sent
    assert isinstance(sent.command, CreateConnection)
    assert sent.command.connection_id == conn.id
    assert sent.command.recipient_key_id == w.keys.opener.active_kid
    assert sent.reply_to == REPLIES_QUEUE
    assert sent.request_id == "req-1"
    stored = w.repo.docs[conn.id]["command"]
    assert stored["message_id"] == sent.message_id
    assert stored["published_at"] is not None


async def test_a_second_connection_with_the_same_name_is_refused() -> None:
    w = make_world()
    await w.connections.create(new_connection("acme"))
    with pytest.raises(NameTaken):
        await w.connections.create(new_connection("acme"))


async def test_a_publish_failure_keeps_the_command_recorded_and_the_sweeper_publishes_it_later() -> None:
    w = make_world()
    w.publisher.fail_with = BrokerUnavailable("broker down")
    conn = await w.connections.create(new_connection())
    assert w.repo.docs[conn.id]["command"]["published_at"] is None

    w.publisher.fail_with = None
    assert await w.connections.sweep_once() == 0  # still within the publish grace period
    w.clock.advance(11)
    assert await w.connections.sweep_once() == 1
    [sent] = w.publisher.sent
    assert isinstance(sent.command, CreateConnection) and sent.command.connection_id == conn.id
    assert w.repo.docs[conn.id]["command"]["published_at"] is not None
    assert w.repo.docs[conn.id]["command"]["attempts"] == 2
    assert await w.connections.sweep_once() == 0


async def test_a_pending_connection_unanswered_past_the_deadline_is_published_again_with_a_new_message_id() -> (
    None
):
    w = make_world()
    conn = await w.connections.create(new_connection())
    w.clock.advance(121)
    assert await w.connections.sweep_once() == 1
    first, second = w.publisher.sent
    assert first.command == second.command
    assert first.message_id != second.message_id
    await w.connections.record_reply(created_reply(conn.id, w.keys.sealer, w.clock()))
    w.clock.advance(500)
    assert await w.connections.sweep_once() == 0


async def test_connection_created_opens_the_token_encrypts_it_at_rest_and_activates() -> None:
    w = make_world()
    conn = await w.connections.create(new_connection())
    await w.connections.record_reply(created_reply(conn.id, w.keys.sealer, w.clock()))

    stored = await w.repo.get(conn.id)
    assert stored is not None and stored.status is ConnectionStatus.ACTIVE
    assert stored.app is not None and stored.app.kind == "external_client_app"
    assert stored.instance_url == "https://acme.my.salesforce.com"
    assert stored.token is not None
    assert SAMPLE_TOKEN not in repr(w.repo.docs[conn.id])
    plaintext = w.keys.keyring.decrypt(stored.token.ciphertext, record_id=conn.id, field=ACCESS_TOKEN_FIELD)
    assert plaintext == SAMPLE_TOKEN


async def test_a_duplicate_connection_created_reply_changes_nothing() -> None:
    w = make_world()
    conn = await active_connection(w)
    before = dict(w.repo.docs[conn.id])
    await w.connections.record_reply(
        created_reply(conn.id, w.keys.sealer, w.clock(), token=SAMPLE_TOKEN + "other")
    )
    assert w.repo.docs[conn.id] == before


async def test_command_failed_marks_the_connection_failed_with_code_and_message() -> None:
    w = make_world()
    conn = await w.connections.create(new_connection())
    failure = CommandFailed(
        connection_id=conn.id,
        command_type=CreateConnection.message_type,
        error=ErrorDetail(code=ErrorCode.USER_NOT_FOUND, message="no active user integration@acme.com"),
    )
    await w.connections.record_reply(failure)
    await w.connections.record_reply(failure)  # duplicate: harmless

    stored = await w.repo.get(conn.id)
    assert stored is not None and stored.status is ConnectionStatus.FAILED
    assert stored.error is not None
    assert (stored.error.code, stored.error.message) == (
        "user_not_found",
        "no active user integration@acme.com",
    )
    assert stored.version == 2


async def test_a_reply_for_an_unknown_connection_raises_so_the_consumer_dead_letters_it() -> None:
    w = make_world()
    with pytest.raises(ConnectionNotFound):
        await w.connections.record_reply(created_reply("con_unknown", w.keys.sealer, w.clock()))


async def test_a_token_sealed_for_another_connection_fails_the_connection_instead_of_storing_it() -> None:
    w = make_world()
    conn = await w.connections.create(new_connection())
    other = created_reply("con_other", w.keys.sealer, w.clock())
    forged = created_reply(conn.id, w.keys.sealer, w.clock()).model_copy(
        update={"sealed_token": SealedToken(key_id="r1", ciphertext=other.sealed_token.ciphertext)}
    )
    await w.connections.record_reply(forged)
    stored = await w.repo.get(conn.id)
    assert stored is not None and stored.status is ConnectionStatus.FAILED
    assert stored.error is not None and stored.error.code == "sealing_failed"
    assert stored.token is None


async def test_a_token_sealed_to_an_unknown_manager_key_fails_the_connection() -> None:
    w = make_world()
    stranger = make_keys(recipient="r1")
    conn = await w.connections.create(new_connection())
    await w.connections.record_reply(created_reply(conn.id, stranger.sealer, w.clock()))
    stored = await w.repo.get(conn.id)
    assert stored is not None and stored.status is ConnectionStatus.FAILED


async def test_delete_publishes_delete_connection_and_the_reply_makes_it_deleted() -> None:
    w = make_world()
    conn = await active_connection(w)
    deleting = await w.connections.delete(conn.id, request_id="req-9")
    assert deleting.status is ConnectionStatus.DELETING
    assert isinstance(w.publisher.sent[-1].command, DeleteConnection)

    again = await w.connections.delete(conn.id)  # repeating it sends nothing new
    assert again.status is ConnectionStatus.DELETING and len(w.publisher.sent) == 2

    await w.connections.record_reply(ConnectionDeleted(connection_id=conn.id))
    await w.connections.record_reply(ConnectionDeleted(connection_id=conn.id))
    stored = await w.repo.get(conn.id)
    assert stored is not None and stored.status is ConnectionStatus.DELETED
    assert stored.token is None
    assert "name_key" not in w.repo.docs[conn.id]
    await w.connections.create(new_connection(conn.name))  # the name is free again


async def test_deleting_a_pending_connection_is_refused() -> None:
    w = make_world()
    conn = await w.connections.create(new_connection())
    with pytest.raises(InvalidTransition):
        await w.connections.delete(conn.id)


async def test_a_failed_delete_is_recorded_and_a_second_delete_request_tries_again() -> None:
    w = make_world()
    conn = await active_connection(w)
    await w.connections.delete(conn.id)
    await w.connections.record_reply(
        CommandFailed(
            connection_id=conn.id,
            command_type=DeleteConnection.message_type,
            error=ErrorDetail(code=ErrorCode.AUTHORIZATION_REVOKED, message="org authorization revoked"),
        )
    )
    stored = await w.repo.get(conn.id)
    assert stored is not None and stored.status is ConnectionStatus.DELETING
    assert stored.error is not None and stored.error.code == "authorization_revoked"
    w.clock.advance(1000)
    assert await w.connections.sweep_once() == 0  # a failed delete is not retried blindly

    await w.connections.delete(conn.id)
    assert [type(s.command) for s in w.publisher.sent].count(DeleteConnection) == 2


async def test_integrations_bind_to_existing_connections_only() -> None:
    w = make_world()
    conn = await active_connection(w)
    bound = await w.connections.associate("billing-sync", conn.id)
    assert bound.connection_id == conn.id
    with pytest.raises(ConnectionNotFound):
        await w.connections.associate("billing-sync", "con_missing")
    await w.connections.delete(conn.id)
    with pytest.raises(ConnectionNotActive):
        await w.connections.associate("other", conn.id)


async def test_pages_follow_creation_order_and_end_with_no_cursor() -> None:
    w = make_world()
    ids = []
    for i in range(5):
        w.clock.advance(1)
        ids.append((await w.connections.create(new_connection(f"c{i}"))).id)
    first, cursor = await w.connections.page(limit=2, after=None)
    second, cursor2 = await w.connections.page(limit=2, after=cursor)
    third, cursor3 = await w.connections.page(limit=2, after=cursor2)
    assert [c.id for c in first + second + third] == ids
    assert cursor3 is None


async def test_a_command_the_builder_never_answers_is_given_up_after_its_attempts() -> None:
    from manager.outbox import MAX_ATTEMPTS, NO_REPLY

    w = make_world()
    conn = await w.connections.create(new_connection())
    for _ in range(MAX_ATTEMPTS + 1):
        w.clock.advance(121)
        await w.connections.sweep_once()
    assert len(w.publisher.sent) == MAX_ATTEMPTS
    stored = await w.repo.get(conn.id)
    assert stored is not None and stored.status is ConnectionStatus.FAILED
    assert stored.error is not None and stored.error.code == NO_REPLY
    assert str(MAX_ATTEMPTS) in stored.error.message


async def test_publishes_refused_during_a_broker_outage_do_not_count_toward_giving_up() -> None:
    from manager.outbox import MAX_ATTEMPTS

    w = make_world()
    w.publisher.fail_with = BrokerUnavailable("broker down")
    conn = await w.connections.create(new_connection())
    for _ in range(MAX_ATTEMPTS + 5):  # a long outage: every sweep claims the command, no publish lands
        w.clock.advance(11)
        await w.connections.sweep_once()
    assert w.repo.docs[conn.id]["command"]["attempts"] > MAX_ATTEMPTS
    assert w.publisher.sent == []

    w.publisher.fail_with = None  # the broker is back: the command gets its full share of publishes
    w.clock.advance(11)
    assert await w.connections.sweep_once() == 1
    for _ in range(MAX_ATTEMPTS - 1):
        w.clock.advance(121)
        assert await w.connections.sweep_once() == 1
        stored = await w.repo.get(conn.id)
        assert stored is not None and stored.status is ConnectionStatus.PENDING
    w.clock.advance(121)
    assert await w.connections.sweep_once() == 0
    stored = await w.repo.get(conn.id)
    assert stored is not None and stored.status is ConnectionStatus.FAILED
    assert len(w.publisher.sent) == MAX_ATTEMPTS
