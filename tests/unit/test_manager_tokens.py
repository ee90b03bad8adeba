"""Token reads and refreshes over fakes: staleness, coalescing in one replica and across replicas, errors."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from manager.errors import BuilderUnavailable, ConnectionNotActive, IntegrationNotFound, TokenRefreshFailed

from shared.amqp import RpcTimeout
from shared.contracts import CommandFailed, Contract, ErrorCode, ErrorDetail, RefreshConnectionToken
from tests.unit.manager_fakes import FakeConnections
from tests.unit.manager_world import (
    SAMPLE_TOKEN,
    active_connection,
    make_world,
    new_connection,
    refreshed_reply,
)

pytestmark = pytest.mark.unit


async def test_a_fresh_token_is_decrypted_without_asking_the_builder() -> None:
    w = make_world()
    conn = await active_connection(w)
    view = await w.tokens.for_connection(conn.id)
    assert view.access_token == SAMPLE_TOKEN
    assert view.instance_url == "https://acme.my.salesforce.com"
    assert view.token_type == "Bearer"
    assert w.rpc.calls == []


async def test_a_token_older_than_the_lifetime_is_refreshed_on_read() -> None:
    w = make_world()
    conn = await active_connection(w)
    w.clock.advance(3600)
    view = await w.tokens.for_connection(conn.id)
    assert view.access_token == SAMPLE_TOKEN + "R"
    [call] = w.rpc.calls
    assert isinstance(call, RefreshConnectionToken)
    assert call.connection_id == conn.id and call.recipient_key_id == "r1"
    assert w.rpc.deadlines[0] <= 2.0


async def test_fifty_concurrent_forced_refreshes_in_one_replica_send_one_command() -> None:
    w = make_world(rpc_delay=0.05)
    conn = await active_connection(w)
    views = await asyncio.gather(*(w.tokens.for_connection(conn.id, force_refresh=True) for _ in range(50)))
    assert len(w.rpc.calls) == 1
    assert {v.access_token for v in views} == {SAMPLE_TOKEN + "R"}
    # a forced refresh soon after returns that token; later ones refresh again
    await w.tokens.for_connection(conn.id, force_refresh=True)
    assert len(w.rpc.calls) == 1
    w.clock.advance(6)
    await w.tokens.for_connection(conn.id, force_refresh=True)
    assert len(w.rpc.calls) == 2


async def test_forced_refreshes_on_two_replicas_sharing_a_store_send_one_command() -> None:
    shared_repo = FakeConnections()
    a = make_world(repo=shared_repo, instance_id="mgr-a", rpc_delay=0.1)
    b = make_world(repo=shared_repo, instance_id="mgr-b", rpc_delay=0.1, keys=a.keys, clock=a.clock)
    conn = await active_connection(a)
    calls = [r.tokens.for_connection(conn.id, force_refresh=True) for r in (a, b) for _ in range(25)]
    views = await asyncio.gather(*calls)
    assert len(a.rpc.calls) + len(b.rpc.calls) == 1
    assert {v.access_token for v in views} == {SAMPLE_TOKEN + "R"}
    assert shared_repo.docs[conn.id]["refresh_lease"] is None


async def test_a_refused_refresh_is_shared_with_the_other_replicas_waiters_not_asked_again() -> None:
    async def refuse(command: Any) -> Contract:
        return CommandFailed(
            connection_id=command.connection_id,
            command_type=RefreshConnectionToken.message_type,
            error=ErrorDetail(code=ErrorCode.USER_INACTIVE, message="the user is inactive"),
        )

    shared_repo = FakeConnections()
    a = make_world(repo=shared_repo, instance_id="mgr-a", rpc_delay=0.1, rpc_answer=refuse)
    b = make_world(
        repo=shared_repo, instance_id="mgr-b", rpc_delay=0.1, rpc_answer=refuse, keys=a.keys, clock=a.clock
    )
    conn = await active_connection(a)
    calls = [r.tokens.for_connection(conn.id, force_refresh=True) for r in (a, b) for _ in range(10)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert len(a.rpc.calls) + len(b.rpc.calls) == 1
    assert all(isinstance(o, TokenRefreshFailed) and o.cause == "user_inactive" for o in outcomes), outcomes
    assert shared_repo.docs[conn.id]["refresh_lease"] is None
    # a later refresh is a new question: it asks the Builder again
    with pytest.raises(TokenRefreshFailed):
        await b.tokens.for_connection(conn.id, force_refresh=True)
    assert len(a.rpc.calls) + len(b.rpc.calls) == 2


async def test_a_replica_takes_over_when_the_lease_holder_vanished() -> None:
    w = make_world()
    conn = await active_connection(w)
    # another replica took the lease and died: its lease runs out at "until"
    taken = await w.repo.acquire_refresh_lease(
        conn.id, holder="dead", until=w.clock() + timedelta(seconds=0.2), now=w.clock()
    )
    assert taken

    async def expire_lease() -> None:
        await asyncio.sleep(0.1)
        w.clock.advance(1)

    view, _ = await asyncio.gather(w.tokens.for_connection(conn.id, force_refresh=True), expire_lease())
    assert view.access_token == SAMPLE_TOKEN + "R"
    assert len(w.rpc.calls) == 1


async def test_a_builder_that_does_not_answer_gives_builder_unavailable_with_retry_after() -> None:
    async def timeout(_: Any) -> Contract:
        raise RpcTimeout("no reply within 2s")

    w = make_world(rpc_answer=timeout)
    conn = await active_connection(w)
    with pytest.raises(BuilderUnavailable) as caught:
        await w.tokens.for_connection(conn.id, force_refresh=True)
    assert caught.value.retry_after and caught.value.retry_after > 0
    assert w.repo.docs[conn.id]["refresh_lease"] is None  # released for the next try


async def test_a_waiting_replica_gives_up_at_its_deadline_when_the_holder_never_finishes() -> None:
    w = make_world(rpc_deadline=0.3)
    conn = await active_connection(w)
    far = w.clock() + timedelta(hours=1)
    assert await w.repo.acquire_refresh_lease(conn.id, holder="slow", until=far, now=w.clock())
    started = asyncio.get_running_loop().time()
    with pytest.raises(BuilderUnavailable):
        await w.tokens.for_connection(conn.id, force_refresh=True)
    assert asyncio.get_running_loop().time() - started < 2
    assert w.rpc.calls == []


async def test_a_retryable_builder_failure_is_unavailable_and_a_permanent_one_is_a_refresh_failure() -> None:
    answers = iter([ErrorCode.SALESFORCE_UNAVAILABLE, ErrorCode.AUTHORIZATION_REVOKED])

    async def failing(command: Any) -> Contract:
        code = next(answers)
        return CommandFailed(
            connection_id=command.connection_id,
            command_type=RefreshConnectionToken.message_type,
            error=ErrorDetail(
                code=code, message="it went wrong", retryable=code == ErrorCode.SALESFORCE_UNAVAILABLE
            ),
        )

    w = make_world(rpc_answer=failing)
    conn = await active_connection(w)
    with pytest.raises(BuilderUnavailable) as first:
        await w.tokens.for_connection(conn.id, force_refresh=True)
    assert (first.value.code, first.value.cause) == ("builder_unavailable", "salesforce_unavailable")
    with pytest.raises(TokenRefreshFailed) as second:
        await w.tokens.for_connection(conn.id, force_refresh=True)
    assert (second.value.code, second.value.cause) == ("token_refresh_failed", "authorization_revoked")


async def test_an_older_refreshed_token_does_not_replace_the_stored_one() -> None:
    w = make_world()

    async def stale(command: Any) -> Contract:
        return refreshed_reply(
            command.connection_id,
            w.keys.sealer,
            w.clock() - timedelta(hours=2),
            token="old-token-value",
        )

    w.rpc.answer = stale
    conn = await active_connection(w)
    view = await w.tokens.for_connection(conn.id, force_refresh=True)
    assert view.access_token == SAMPLE_TOKEN


async def test_tokens_of_pending_connections_and_unknown_integrations_are_refused() -> None:
    w = make_world()
    conn = await w.connections.create(new_connection())
    with pytest.raises(ConnectionNotActive):
        await w.tokens.for_connection(conn.id)
    with pytest.raises(IntegrationNotFound):
        await w.tokens.for_integration("nobody")


async def test_an_integration_reads_the_token_of_its_connection() -> None:
    w = make_world()
    conn = await active_connection(w)
    await w.connections.associate("billing-sync", conn.id)
    view = await w.tokens.for_integration("billing-sync")
    assert view.access_token == SAMPLE_TOKEN


async def test_a_caller_that_gives_up_does_not_cancel_the_refresh_others_wait_for() -> None:
    w = make_world(rpc_delay=0.2)
    conn = await active_connection(w)
    impatient = asyncio.create_task(w.tokens.for_connection(conn.id, force_refresh=True))
    await asyncio.sleep(0.05)
    patient = asyncio.create_task(w.tokens.for_connection(conn.id, force_refresh=True))
    impatient.cancel()
    view = await patient
    assert view.access_token == SAMPLE_TOKEN + "R"
    assert len(w.rpc.calls) == 1


def _refusing(code: ErrorCode) -> Any:
    async def answer(command: Any) -> Contract:
        return CommandFailed(
            connection_id=command.connection_id,
            command_type=RefreshConnectionToken.message_type,
            error=ErrorDetail(code=code, message=f"{code.value}: refused"),
        )

    return answer


@pytest.mark.parametrize("code", [ErrorCode.AUTHORIZATION_REVOKED, ErrorCode.USER_INACTIVE])
async def test_a_permanent_refresh_refusal_is_recorded_on_the_connection_and_the_old_token_kept(
    code: ErrorCode,
) -> None:
    w = make_world(rpc_answer=_refusing(code))
    conn = await active_connection(w)
    with pytest.raises(TokenRefreshFailed):
        await w.tokens.for_connection(conn.id, force_refresh=True)
    stored = await w.connections.get(conn.id)
    assert stored.status.value == "active" and stored.error is None and stored.token == conn.token
    assert stored.last_refresh_error is not None
    assert (stored.last_refresh_error.code, stored.last_refresh_error.at) == (code.value, w.clock())
    assert (await w.tokens.for_connection(conn.id)).access_token == SAMPLE_TOKEN


async def test_recording_a_refusal_never_hides_the_refusal_from_the_caller() -> None:
    w = make_world(rpc_answer=_refusing(ErrorCode.AUTHORIZATION_REVOKED))
    conn = await active_connection(w)
    saves = w.repo.save

    async def broken_save(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database went away")

    w.repo.save = broken_save  # type: ignore[method-assign]
    with pytest.raises(TokenRefreshFailed) as info:
        await w.tokens.for_connection(conn.id, force_refresh=True)
    assert info.value.cause == "authorization_revoked"
    w.repo.save = saves  # type: ignore[method-assign]
    assert (await w.connections.get(conn.id)).last_refresh_error is None
