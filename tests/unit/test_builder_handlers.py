"""The Builder's command handlers against fakes of its own ports (store, Salesforce)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from builder.handlers import Handlers, PropagationPending, failure_reply
from builder.leases import ConnectionBusy
from builder.ports import SfUser
from builder.salesforce.errors import OAuthError, RequestLimitExceeded, SalesforceApiError
from builder.store import ConnectionStatus, OrgAuthorization

from shared.amqp import Delivery
from shared.contracts import (
    AppKind,
    CommandFailed,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionTokenRefreshed,
    CreateConnection,
    DeleteConnection,
    ErrorCode,
    RefreshConnectionToken,
)
from shared.errors import SfconnectError
from shared.sealing import Opener
from tests.unit.builder_fakes import RECIPIENT_PRIVATE, FakeOrg, FakeSalesforce, FakeStore, make_settings

pytestmark = pytest.mark.unit

ORG = "00D000000000001AAA"
USERNAME = "ops+int@acme.example.com"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def delivery(message: Any, *, attempt: int = 1, first: datetime | None = None) -> Delivery:
    return Delivery(
        message_id="m1", correlation_id="c1", reply_to="replies", request_id="r1",
        message_type=message.message_type, redelivered=attempt > 1, attempt=attempt,
        first_attempt_at=first or datetime(2026, 11, 2, 12, 0, tzinfo=UTC), timestamp=None, app_id="manager",
        routing_key=message.routing_key,
    )  # fmt: skip


def create(
    kind: AppKind = AppKind.AUTO, *, cid: str = "conn-1", username: str = USERNAME
) -> CreateConnection:
    return CreateConnection(
        connection_id=cid,
        org_id=ORG,
        salesforce_username=username,
        admin_email="admin@acme.example.com",
        label='Acme <ops> & "friends" ✓',
        app_kind=kind,
        recipient_key_id="mgr1",
    )


class World:
    def __init__(self, **settings: Any) -> None:
        self.store = FakeStore()
        self.clock = Clock()
        self.settings = make_settings(**settings)
        self.org = FakeOrg(self._auth())
        self.org.users[USERNAME] = SfUser("005000000000001AAA", USERNAME, True)
        self.org.users["gone@acme.example.com"] = SfUser("005000000000002AAA", "gone@acme.example.com", False)
        self.sf = FakeSalesforce(self.store, {ORG[:15]: self.org})
        self.handlers = Handlers(
            self.store, self.sf, self.settings.sealer(), self.settings, "test-holder", clock=self.clock
        )

    def _auth(self, sandbox: bool = False) -> OrgAuthorization:
        return OrgAuthorization(
            org_id=ORG, user_id="005000000000009AAA", instance_url="https://acme.my.salesforce.com",
            login_url="https://login.salesforce.com", is_sandbox=sandbox, scopes=["api", "refresh_token"],
            refresh_token="5Aep-refresh", access_token="00D000000000001!access",
        )  # fmt: skip

    async def authorize(self, sandbox: bool = False) -> None:
        await self.store.save_authorization(self._auth(sandbox))


@pytest.fixture
async def world() -> World:
    w = World()
    await w.authorize()
    return w


def opened(reply: ConnectionCreated | ConnectionTokenRefreshed) -> str:
    return Opener.parse(RECIPIENT_PRIVATE).open(
        reply.sealed_token.ciphertext,
        key_id=reply.sealed_token.key_id,
        connection_id=reply.connection_id,
        message_type=reply.message_type,
    )


async def test_a_create_makes_an_external_client_app_by_default_and_replies_with_a_sealed_token(
    world: World,
) -> None:
    cmd = create()
    reply = await world.handlers.create_connection(cmd, delivery(cmd))
    assert isinstance(reply, ConnectionCreated)
    assert reply.app.kind is AppKind.EXTERNAL_CLIENT_APP
    assert reply.app.full_name.startswith("sfc_conn_1_")
    assert opened(reply) == "00D000000000001!fake.token.1"
    minted = world.sf.minted[0]
    assert minted == {
        "host": "https://acme.my.salesforce.com",
        "iss": reply.app.consumer_key,
        "sub": USERNAME,
        "aud": "https://login.salesforce.com",
    }
    ps_id = world.org.permission_sets[reply.app.full_name]
    assert ("005000000000001AAA", ps_id) in world.org.assignments
    # the ECA policy names the permission set by id (salesforce-facts.md §9) and the read-back accepts it
    spec = world.org.deploys[next(iter(world.org.deploys))]
    assert spec.permission_set_id == ps_id
    assert world.org.apps[("external_client_app", reply.app.full_name)].permission_sets == (ps_id,)
    assert world.store.orgs[ORG[:15]].app_kind_support == {"external_client_app": True}
    record = world.store.connections["conn-1"]
    assert record.status is ConnectionStatus.ACTIVE and record.private_key_pem


async def test_a_connected_app_is_created_with_the_consumer_key_the_builder_chose(world: World) -> None:
    cmd = create(AppKind.CONNECTED_APP)
    reply = await world.handlers.create_connection(cmd, delivery(cmd))
    assert reply.app.kind is AppKind.CONNECTED_APP
    assert reply.app.consumer_key == world.store.connections["conn-1"].consumer_key
    assert reply.app.consumer_key.isalnum() and len(reply.app.consumer_key) == 48
    assert "start_eca_deploy" not in world.org.calls


async def test_auto_falls_back_to_an_eca_when_the_org_blocks_connected_apps_and_remembers_it() -> None:
    w = World(app_kind_preference="connected_app")
    await w.authorize()
    w.org.connected_apps_blocked = True
    cmd = create()
    reply = await w.handlers.create_connection(cmd, delivery(cmd))
    assert reply.app.kind is AppKind.EXTERNAL_CLIENT_APP
    assert w.store.orgs[ORG[:15]].app_kind_support == {"connected_app": False, "external_client_app": True}
    w.org.calls.clear()
    second = create(cid="conn-2")
    await w.handlers.create_connection(second, delivery(second))
    assert "create_connected_app" not in w.org.calls, "the org's refusal was remembered"


async def test_auto_falls_back_to_a_connected_app_when_external_client_apps_are_disabled(
    world: World,
) -> None:
    world.org.eca_disabled = True
    cmd = create()
    reply = await world.handlers.create_connection(cmd, delivery(cmd))
    assert reply.app.kind is AppKind.CONNECTED_APP
    assert world.store.orgs[ORG[:15]].app_kind_support == {
        "external_client_app": False,
        "connected_app": True,
    }


async def test_an_explicit_connected_app_in_a_blocking_org_fails_with_app_creation_blocked(
    world: World,
) -> None:
    world.org.connected_apps_blocked = True
    cmd = create(AppKind.CONNECTED_APP)
    with pytest.raises(SfconnectError) as info:
        await world.handlers.create_connection(cmd, delivery(cmd))
    assert info.value.code == ErrorCode.APP_CREATION_BLOCKED
    assert "Connected App creation is restricted" in info.value.message


@pytest.mark.parametrize(
    ("username", "code"),
    [
        ("nobody@acme.example.com", ErrorCode.USER_NOT_FOUND),
        ("gone@acme.example.com", ErrorCode.USER_INACTIVE),
    ],
)
async def test_a_missing_or_inactive_user_fails_before_anything_is_created(
    world: World, username: str, code: ErrorCode
) -> None:
    cmd = create(username=username)
    with pytest.raises(SfconnectError) as info:
        await world.handlers.create_connection(cmd, delivery(cmd))
    assert info.value.code == code and username in info.value.message
    assert world.org.apps == {} and world.org.permission_sets == {}


async def test_an_app_read_back_without_admin_approval_fails_with_app_creation_failed(world: World) -> None:
    world.org.tamper_admin_approved = True
    cmd = create()
    with pytest.raises(SfconnectError) as info:
        await world.handlers.create_connection(cmd, delivery(cmd))
    assert info.value.code == ErrorCode.APP_CREATION_FAILED
    assert "not admin-approved" in info.value.message
    assert world.sf.minted == []


async def test_a_new_app_that_is_not_propagated_yet_is_retried_later_without_a_second_app(
    world: World,
) -> None:
    world.sf.jwt_errors.append(OAuthError("invalid_client_id", "client identifier invalid"))
    cmd = create()
    with pytest.raises(PropagationPending) as info:
        await world.handlers.create_connection(cmd, delivery(cmd))
    assert info.value.retry_after is not None and info.value.retry_after >= 1
    world.clock.now += timedelta(seconds=5)
    reply = await world.handlers.create_connection(cmd, delivery(cmd, attempt=2))
    assert isinstance(reply, ConnectionCreated)
    assert world.org.calls.count("start_eca_deploy") == 1
    assert len(world.org.apps) == 1


async def test_propagation_past_the_deadline_fails_with_propagation_timeout() -> None:
    w = World(propagation_deadline_seconds=60)
    await w.authorize()
    w.sf.jwt_errors.extend([OAuthError("invalid_client_id", "client identifier invalid")] * 2)
    cmd = create()
    with pytest.raises(PropagationPending):
        await w.handlers.create_connection(cmd, delivery(cmd))
    w.clock.now += timedelta(seconds=61)
    with pytest.raises(SfconnectError) as info:
        await w.handlers.create_connection(cmd, delivery(cmd, attempt=5))
    assert info.value.code == ErrorCode.PROPAGATION_TIMEOUT
    assert "client identifier invalid" in info.value.message


async def test_the_propagation_deadline_runs_from_the_app_creation_not_the_first_delivery() -> None:
    w = World(propagation_deadline_seconds=60)
    await w.authorize()
    w.sf.jwt_errors.extend([OAuthError("invalid_client_id", "client identifier invalid")] * 2)
    cmd = create()
    # Earlier deliveries (busy connection, slow deploy retries) ate ten minutes before the app existed.
    first = w.clock.now - timedelta(minutes=10)
    with pytest.raises(PropagationPending):
        await w.handlers.create_connection(cmd, delivery(cmd, attempt=4, first=first))
    assert w.store.connections["conn-1"].app_created_at == w.clock.now
    w.clock.now += timedelta(seconds=61)
    with pytest.raises(SfconnectError) as info:
        await w.handlers.create_connection(cmd, delivery(cmd, attempt=5, first=first))
    assert info.value.code == ErrorCode.PROPAGATION_TIMEOUT
    assert "61s after it was created" in info.value.message


async def test_a_redelivered_create_replays_the_sent_reply_without_minting_again(world: World) -> None:
    cmd = create()
    first = await world.handlers.create_connection(cmd, delivery(cmd))
    again = await world.handlers.create_connection(cmd, delivery(cmd, attempt=1))
    assert again == first
    assert len(world.sf.minted) == 1 and len(world.org.apps) == 1


async def test_a_user_who_cannot_be_preauthorized_gets_preauthorization_failed(world: World) -> None:
    world.sf.jwt_errors.append(
        OAuthError("invalid_app_access", "user is not admin approved to access this app")
    )
    cmd = create()
    with pytest.raises(SfconnectError) as info:
        await world.handlers.create_connection(cmd, delivery(cmd))
    assert info.value.code == ErrorCode.PREAUTHORIZATION_FAILED


async def test_an_unknown_recipient_key_is_refused_before_salesforce_is_called(world: World) -> None:
    cmd = create().model_copy(update={"recipient_key_id": "nope"})
    with pytest.raises(SfconnectError) as info:
        await world.handlers.create_connection(cmd, delivery(cmd))
    assert info.value.code == ErrorCode.INVALID_COMMAND
    assert world.org.calls == []


async def test_an_org_without_authorization_or_with_a_revoked_one_gets_its_code(world: World) -> None:
    world.store.orgs.clear()
    cmd = create()
    with pytest.raises(SfconnectError) as info:
        await world.handlers.create_connection(cmd, delivery(cmd))
    assert info.value.code == ErrorCode.ORG_NOT_AUTHORIZED
    await world.authorize()
    await world.store.mark_needs_reauth(ORG, "refresh refused")
    with pytest.raises(SfconnectError) as info:
        await world.handlers.create_connection(cmd, delivery(cmd))
    assert info.value.code == ErrorCode.AUTHORIZATION_REVOKED


async def test_a_sandbox_org_uses_the_test_audience_unless_overridden() -> None:
    w = World()
    await w.authorize(sandbox=True)
    cmd = create()
    await w.handlers.create_connection(cmd, delivery(cmd))
    assert w.sf.minted[0]["aud"] == "https://test.salesforce.com"
    o = World(jwt_audience="https://acme.my.salesforce.com")
    await o.authorize(sandbox=True)
    await o.handlers.create_connection(cmd, delivery(cmd))
    assert o.sf.minted[0]["aud"] == "https://acme.my.salesforce.com"


async def test_refresh_mints_a_new_token_with_the_stored_key_and_app(world: World) -> None:
    cmd = create()
    created = await world.handlers.create_connection(cmd, delivery(cmd))
    refresh = RefreshConnectionToken(connection_id="conn-1", recipient_key_id="mgr1")
    reply = await world.handlers.refresh_token(refresh, delivery(refresh))
    assert isinstance(reply, ConnectionTokenRefreshed)
    assert opened(reply) == "00D000000000001!fake.token.2"
    assert world.sf.minted[1]["iss"] == created.app.consumer_key
    missing = RefreshConnectionToken(connection_id="nope", recipient_key_id="mgr1")
    with pytest.raises(SfconnectError) as info:
        await world.handlers.refresh_token(missing, delivery(missing))
    assert info.value.code == ErrorCode.CONNECTION_NOT_FOUND


async def test_delete_removes_app_and_permission_set_revokes_and_forgets_the_key_idempotently(
    world: World,
) -> None:
    cmd = create()
    await world.handlers.create_connection(cmd, delivery(cmd))
    delete = DeleteConnection(connection_id="conn-1")
    reply = await world.handlers.delete_connection(delete, delivery(delete))
    assert reply == ConnectionDeleted(connection_id="conn-1", app_existed=True)
    assert world.org.apps == {} and world.org.permission_sets == {} and world.org.assignments == set()
    assert world.sf.revoked == ["00D000000000001!fake.token.1"]
    record = world.store.connections["conn-1"]
    assert record.private_key_pem is None and record.status is ConnectionStatus.DELETED
    assert await world.handlers.delete_connection(delete, delivery(delete)) == reply
    unknown = DeleteConnection(connection_id="never")
    assert (await world.handlers.delete_connection(unknown, delivery(unknown))).app_existed is False


def test_failure_replies_carry_stable_codes_and_say_whether_to_retry() -> None:
    cmd = create()
    exhausted = failure_reply(cmd, delivery(cmd), PropagationPending("still not there", retry_after=5))
    assert isinstance(exhausted, CommandFailed)
    assert exhausted.error.code is ErrorCode.PROPAGATION_TIMEOUT
    limited = failure_reply(cmd, delivery(cmd), RequestLimitExceeded("limit"))
    assert isinstance(limited, CommandFailed)
    assert limited.error.code is ErrorCode.REQUEST_LIMIT_EXCEEDED and limited.error.retryable
    odd = failure_reply(cmd, delivery(cmd), SfconnectError("boom 00D000000000001!AQ4AQFakeTokenValue.abcdef"))
    assert isinstance(odd, CommandFailed)
    assert odd.error.code is ErrorCode.INTERNAL_ERROR and "AQ4AQFake" not in odd.error.message


def test_a_connection_still_busy_after_every_retry_is_a_retryable_salesforce_unavailable() -> None:
    cmd = create()
    busy = ConnectionBusy("connection conn-1 is being handled by another delivery", retry_after=10)
    reply = failure_reply(cmd, delivery(cmd, attempt=8), busy)
    assert isinstance(reply, CommandFailed)
    assert reply.error.code is ErrorCode.SALESFORCE_UNAVAILABLE and reply.error.retryable
    assert "connection conn-1 was still being handled by another delivery" in reply.error.message
    assert "unexpectedly" not in reply.error.message


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (OAuthError("inactive_user", "user is inactive"), ErrorCode.USER_INACTIVE),
        (OAuthError("inactive_org", "organization is inactive"), ErrorCode.AUTHORIZATION_REVOKED),
    ],
)
async def test_an_inactive_user_and_an_inactive_org_get_their_own_codes(
    world: World, error: OAuthError, code: ErrorCode
) -> None:
    world.sf.jwt_errors.append(error)
    cmd = create()
    with pytest.raises(SfconnectError) as info:
        await world.handlers.create_connection(cmd, delivery(cmd))
    assert info.value.code == code
    assert error.error in info.value.message


async def test_a_refused_deletion_says_it_was_the_deletion(world: World) -> None:
    cmd = create()
    await world.handlers.create_connection(cmd, delivery(cmd))

    async def refuse(kind: str, full_name: str) -> bool:
        raise SalesforceApiError(
            "Metadata API deleteMetadata failed: CANNOT_DELETE: in use", sf_code="CANNOT_DELETE"
        )

    world.org.delete_app = refuse  # type: ignore[method-assign]
    delete = DeleteConnection(connection_id="conn-1")
    with pytest.raises(SfconnectError) as info:
        await world.handlers.delete_connection(delete, delivery(delete))
    assert info.value.code == ErrorCode.APP_CREATION_FAILED
    assert info.value.message.startswith("deleting connection conn-1 failed")
    assert "CANNOT_DELETE" in info.value.message
    assert world.store.connections["conn-1"].status is ConnectionStatus.ACTIVE
