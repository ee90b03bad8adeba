"""CreateConnection / RefreshConnectionToken / DeleteConnection through the real broker, the real
MongoDB-wire server and the in-process Salesforce simulator."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from shared.amqp import H_REASON, REASON_NO_REPLY_TO, command_message
from shared.contracts import (
    AppKind,
    CommandFailed,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionTokenRefreshed,
    DeleteConnection,
    ErrorCode,
    RefreshConnectionToken,
)
from tests.integration.builder_rig import BOT, FORMER, OBRIEN, BuilderRig, builder_rig, running

pytestmark = pytest.mark.integration
RigFactory = Callable[..., AbstractAsyncContextManager[BuilderRig]]


@pytest.fixture
def make_rig(mongodb_url: str, mongo_db: Any, amqp_url: str, amqp_prefix: str) -> RigFactory:
    def factory(**overrides: Any) -> AbstractAsyncContextManager[BuilderRig]:
        return builder_rig(
            mongodb_url=mongodb_url,
            database=mongo_db.name,
            amqp_url=amqp_url,
            prefix=amqp_prefix,
            **overrides,
        )

    return factory


@pytest.fixture
async def rig(make_rig: RigFactory) -> AsyncIterator[BuilderRig]:
    async with make_rig() as r:
        await r.authorize("acme")
        yield r


def opened(rig: BuilderRig, reply: ConnectionCreated | ConnectionTokenRefreshed) -> str:
    return rig.opener.open(
        reply.sealed_token.ciphertext,
        key_id=reply.sealed_token.key_id,
        connection_id=reply.connection_id,
        message_type=reply.message_type,
    )


async def whoami(rig: BuilderRig, reply: ConnectionCreated | ConnectionTokenRefreshed) -> str:
    """Use the minted token against the org: the username it acts as."""
    token = opened(rig, reply)
    url = f"{reply.instance_url}".rstrip("/") + "/services/data/v68.0/query/"
    async with rig.http.get(
        url, params={"q": "SELECT Id, Username FROM User WHERE IsActive = true"},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()
    session = rig.sim.state.tokens.live_session(token, now=rig.sim.state.now(), timeout=3600)
    assert session is not None
    org = rig.sim.state.org("acme")
    assert org is not None
    user = org.user(session.user_id)
    assert user is not None
    return user.username


async def failed(rig: BuilderRig, command: Any, within: float = 20.0) -> CommandFailed:
    await rig.send(command)
    reply = await rig.reply(within)
    assert isinstance(reply, CommandFailed), reply
    return reply


async def test_a_create_makes_an_external_client_app_and_replies_with_a_working_sealed_token(
    rig: BuilderRig,
) -> None:
    await rig.send(rig.create("conn-eca"))
    reply = await rig.reply()
    assert isinstance(reply, ConnectionCreated), reply
    assert reply.app.kind is AppKind.EXTERNAL_CLIENT_APP
    assert await whoami(rig, reply) == BOT
    apps = await rig.sim_apps("acme")
    assert [(a["kind"], a["fullName"], a["adminApproved"], a["hasCertificate"]) for a in apps] == [
        ("external_client_app", reply.app.full_name, True, True)
    ]
    assert apps[0]["consumerKey"] == reply.app.consumer_key


async def test_a_create_makes_a_connected_app_when_asked(rig: BuilderRig) -> None:
    await rig.send(rig.create("conn-ca", app_kind=AppKind.CONNECTED_APP))
    reply = await rig.reply()
    assert isinstance(reply, ConnectionCreated), reply
    assert reply.app.kind is AppKind.CONNECTED_APP
    assert await whoami(rig, reply) == BOT
    apps = await rig.sim_apps("acme")
    assert [(a["kind"], a["consumerKey"]) for a in apps] == [("connected_app", reply.app.consumer_key)]


async def test_auto_falls_back_to_an_eca_in_an_org_that_blocks_connected_apps_and_remembers_it(
    make_rig: RigFactory,
) -> None:
    async with make_rig(
        app_kind_preference="connected_app", org_knobs={"connected_apps_blocked": True}
    ) as rig:
        await rig.authorize("acme")
        await rig.send(rig.create("conn-auto-1"))
        first = await rig.reply()
        assert isinstance(first, ConnectionCreated), first
        assert first.app.kind is AppKind.EXTERNAL_CLIENT_APP
        async with rig.http.get(f"{rig.builder}/v1/orgs", headers=rig.admin) as resp:
            support = (await resp.json())["orgs"][0]["app_kind_support"]
        assert support == {"connected_app": False, "external_client_app": True}
        await rig.send(rig.create("conn-auto-2", username=OBRIEN))
        second = await rig.reply()
        assert isinstance(second, ConnectionCreated) and second.app.kind is AppKind.EXTERNAL_CLIENT_APP
        creates = [
            line for line in rig.log_lines() if line.get("event") == "org does not allow this app kind"
        ]
        assert len(creates) == 1, "the second create did not try the blocked kind again"


@pytest.mark.parametrize(
    ("username", "code"),
    [("nobody@acme.example", ErrorCode.USER_NOT_FOUND), (FORMER, ErrorCode.USER_INACTIVE)],
)
async def test_an_unknown_or_inactive_user_gets_its_code(
    rig: BuilderRig, username: str, code: ErrorCode
) -> None:
    reply = await failed(rig, rig.create("conn-user", username=username))
    assert reply.error.code is code and username in reply.error.message
    assert not reply.error.retryable
    assert await rig.sim_apps("acme") == []


async def test_a_propagation_delay_is_waited_out_through_retries(make_rig: RigFactory) -> None:
    async with make_rig(org_knobs={"propagation_delay_seconds": 2.5}) as rig:
        await rig.authorize("acme")
        await rig.send(rig.create("conn-slow"))
        reply = await rig.reply(30)
        assert isinstance(reply, ConnectionCreated), reply
        retries = [line for line in rig.log_lines() if line.get("event") == "retry scheduled"]
        assert retries and all(line["code"] == "propagation_pending" for line in retries)
        assert len(await rig.sim_apps("acme")) == 1


async def test_a_propagation_beyond_the_deadline_gives_propagation_timeout(make_rig: RigFactory) -> None:
    async with make_rig(
        org_knobs={"propagation_delay_seconds": 600}, propagation_deadline_seconds=2, command_max_attempts=50
    ) as rig:
        await rig.authorize("acme")
        reply = await failed(rig, rig.create("conn-never"), within=30)
        assert reply.error.code is ErrorCode.PROPAGATION_TIMEOUT
        assert "client identifier invalid" in reply.error.message


async def test_a_redelivered_create_leaves_exactly_one_app_and_mints_once(rig: BuilderRig) -> None:
    command = rig.create("conn-twice")
    await rig.send(command)
    await rig.send(command)
    first, second = await rig.reply(), await rig.reply()
    assert isinstance(first, ConnectionCreated) and isinstance(second, ConnectionCreated)
    assert first == second, "the second delivery replays the reply of the first"
    assert len(await rig.sim_apps("acme")) == 1
    assert rig.sim.state.tokens.issued["jwt_bearer"] == 1


async def test_an_org_whose_grant_was_revoked_gets_authorization_revoked(rig: BuilderRig) -> None:
    await rig.sim_post("/__sim/orgs/acme/revoke-grants")
    reply = await failed(rig, rig.create("conn-revoked"))
    assert reply.error.code is ErrorCode.AUTHORIZATION_REVOKED
    assert "authorize" in reply.error.message


async def test_injected_5xx_answers_are_retried_until_salesforce_recovers(rig: BuilderRig) -> None:
    await rig.knobs("acme", fail_next_5xx=2)
    await rig.send(rig.create("conn-flaky"))
    reply = await rig.reply(30)
    assert isinstance(reply, ConnectionCreated), reply
    retries = [line for line in rig.log_lines() if line.get("event") == "retry scheduled"]
    assert [line["code"] for line in retries][:2] == ["salesforce_unavailable", "salesforce_unavailable"]


async def test_persistent_5xx_is_reported_as_salesforce_unavailable_after_the_retries(
    rig: BuilderRig,
) -> None:
    await rig.knobs("acme", error_rate_5xx=1.0)
    reply = await failed(rig, rig.create("conn-down"), within=30)
    assert reply.error.code is ErrorCode.SALESFORCE_UNAVAILABLE and reply.error.retryable


async def test_an_exhausted_api_limit_is_reported_as_request_limit_exceeded(rig: BuilderRig) -> None:
    org = rig.sim.state.org("acme")
    assert org is not None
    await rig.knobs("acme", api_limit=org.knobs.api_requests_used)
    reply = await failed(rig, rig.create("conn-limit"), within=30)
    assert reply.error.code is ErrorCode.REQUEST_LIMIT_EXCEEDED and reply.error.retryable


@pytest.mark.parametrize("kind", [AppKind.EXTERNAL_CLIENT_APP, AppKind.CONNECTED_APP])
async def test_a_label_with_characters_xml_cannot_carry_still_makes_the_app(
    rig: BuilderRig, kind: AppKind
) -> None:
    # U+FFFF/U+FFFE and NUL made lxml refuse the SOAP body on every delivery (internal_error after 25 tries)
    await rig.send(rig.create("conn-nonxml", label="\uffff\ufffe Acme\x00 ERP\x85", app_kind=kind))
    reply = await rig.reply()
    assert isinstance(reply, ConnectionCreated), reply
    assert [a["label"] for a in await rig.sim_apps("acme")] == ["Acme ERP"]


async def test_a_username_with_quote_ampersand_and_plus_works(rig: BuilderRig) -> None:
    await rig.send(rig.create("conn-obrien", username=OBRIEN, app_kind=AppKind.CONNECTED_APP))
    reply = await rig.reply()
    assert isinstance(reply, ConnectionCreated), reply
    assert await whoami(rig, reply) == OBRIEN


async def test_refresh_then_delete_and_no_secret_reaches_a_log_line(rig: BuilderRig) -> None:
    await rig.send(rig.create("conn-life"))
    created = await rig.reply()
    assert isinstance(created, ConnectionCreated), created
    record = await rig.db.connections.find_one({"_id": "conn-life"})
    private_key = rig.keyring.decrypt(record["private_key"], record_id="conn-life", field="private_key")
    await rig.send(RefreshConnectionToken(connection_id="conn-life", recipient_key_id="mgr1"))
    refreshed = await rig.reply()
    assert isinstance(refreshed, ConnectionTokenRefreshed), refreshed
    assert opened(rig, refreshed) != opened(rig, created)
    assert await whoami(rig, refreshed) == BOT
    await rig.send(DeleteConnection(connection_id="conn-life"))
    deleted = await rig.reply()
    assert deleted == ConnectionDeleted(connection_id="conn-life", app_existed=True)
    assert await rig.sim_apps("acme") == []
    org = rig.sim.state.org("acme")
    assert org is not None and all(not p.name.startswith("sfc_") for p in org.permission_sets.values())
    gone = await rig.db.connections.find_one({"_id": "conn-life"})
    assert gone["private_key"] is None and gone["status"] == "deleted"
    await rig.send(DeleteConnection(connection_id="conn-life"))
    assert await rig.reply() == deleted

    await asyncio.sleep(0.2)
    org_doc = await rig.db.orgs.find_one({})
    key = org_doc["_id"]
    secrets = {
        "private key body": "".join(private_key.splitlines()[1:3]),
        "first token": opened(rig, created),
        "refreshed token": opened(rig, refreshed),
        "org refresh token": rig.keyring.decrypt(
            org_doc["refresh_token"], record_id=key, field="refresh_token"
        ),
        "org access token": rig.keyring.decrypt(org_doc["access_token"], record_id=key, field="access_token"),
        "client secret": rig.settings.salesforce_client_secret.get_secret_value(),
    }
    text = rig.logs.getvalue()
    assert text.count("\n") > 20, "the Builder logged what it did"
    for name, value in secrets.items():
        assert value not in text, f"{name} appears in a log line"
    assert "PRIVATE KEY" not in text
    assert not re.search(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.", text), (
        "a JWT assertion appears in a log line"
    )


async def test_a_delete_in_an_org_no_longer_authorized_fails_and_succeeds_once_it_is_authorized_again(
    rig: BuilderRig,
) -> None:
    """Documented in docs/operations.md: the Manager keeps the connection deleting until DELETE is repeated."""
    await rig.send(rig.create("conn-orphan"))
    assert isinstance(await rig.reply(), ConnectionCreated)
    async with rig.http.delete(f"{rig.builder}/v1/orgs/{rig.org_id()}", headers=rig.admin) as resp:
        assert resp.status == 204
    reply = await failed(rig, DeleteConnection(connection_id="conn-orphan"))
    assert reply.error.code is ErrorCode.ORG_NOT_AUTHORIZED and not reply.error.retryable
    assert "POST /v1/salesforce/authorize" in reply.error.message
    record = await rig.db.connections.find_one({"_id": "conn-orphan"})
    assert record["status"] == "active" and record["private_key"], "nothing was forgotten"
    assert len(await rig.sim_apps("acme")) == 1, "the app is still in the org"

    await rig.authorize("acme", method="POST")
    await rig.send(DeleteConnection(connection_id="conn-orphan"))
    assert await rig.reply() == ConnectionDeleted(connection_id="conn-orphan", app_existed=True)
    assert await rig.sim_apps("acme") == []


async def test_a_connected_app_that_lost_its_admin_approval_on_create_fails_the_read_back(
    make_rig: RigFactory,
) -> None:
    async with make_rig(org_knobs={"drop_admin_approval_on_create": True}) as rig:
        await rig.authorize("acme")
        reply = await failed(rig, rig.create("conn-pitfall", app_kind=AppKind.CONNECTED_APP))
        assert reply.error.code is ErrorCode.APP_CREATION_FAILED
        assert "not admin-approved" in reply.error.message
        assert rig.sim.state.tokens.issued["jwt_bearer"] == 0, "no token is minted for an unverified app"


async def test_auto_uses_a_connected_app_where_external_client_apps_are_off(make_rig: RigFactory) -> None:
    async with make_rig(org_knobs={"eca_enabled": False}) as rig:
        await rig.authorize("acme")
        await rig.send(rig.create("conn-no-eca"))
        reply = await rig.reply()
        assert isinstance(reply, ConnectionCreated) and reply.app.kind is AppKind.CONNECTED_APP
        async with rig.http.get(f"{rig.builder}/v1/orgs", headers=rig.admin) as resp:
            support = (await resp.json())["orgs"][0]["app_kind_support"]
        assert support == {"external_client_app": False, "connected_app": True}


async def test_a_sandbox_org_gets_tokens_with_the_test_audience(rig: BuilderRig) -> None:
    await rig.authorize("globex")
    command = rig.create(
        "conn-sandbox", username="etl+nightly@globex.example.dev", org_id=rig.org_id("globex")
    )
    await rig.send(command)
    reply = await rig.reply()
    assert isinstance(reply, ConnectionCreated), reply
    assert str(reply.instance_url).rstrip("/") == rig.sim.org_url("globex")
    record = await rig.db.connections.find_one({"_id": "conn-sandbox"})
    assert record["audience"] == "https://test.salesforce.com"


@pytest.mark.parametrize("refusal", ["license refuses the assignment", "token endpoint refuses the user"])
async def test_a_user_who_cannot_be_preauthorized_gets_preauthorization_failed(
    rig: BuilderRig, refusal: str
) -> None:
    # The simulator's user setting: Salesforce refuses the permission set assignment (the user's license does
    # not allow it), or the token endpoint refuses the user although the permission set is assigned.
    setting = "license_refused" if refusal == "license refuses the assignment" else "token_refused"
    async with rig.http.patch(
        f"{rig.sim}/__sim/orgs/acme/users/{OBRIEN}", json={"preauthorization": setting}
    ) as resp:
        assert resp.status == 200, await resp.text()
    reply = await failed(rig, rig.create("conn-not-preauth", username=OBRIEN))
    assert reply.error.code is ErrorCode.PREAUTHORIZATION_FAILED, reply
    assert not reply.error.retryable


async def test_stopping_the_builder_finishes_the_command_in_flight_before_closing(
    make_rig: RigFactory,
) -> None:
    async with make_rig() as rig:
        await rig.authorize("acme")
        await rig.knobs("acme", latency_ms=250)
        await rig.send(rig.create("conn-drain"))
        consumer = running(rig).consumer
        for _ in range(500):  # up to 10 s
            if consumer.in_flight:
                break
            await asyncio.sleep(0.02)
        assert consumer.in_flight == 1, "the create is being handled"
        await rig.server.close()  # what SIGTERM does: stop serving, drain the consumer, close
        assert consumer.in_flight == 0
        reply = await rig.reply(5)
        assert isinstance(reply, ConnectionCreated), reply
        channel = await rig.amqp.channel()
        queue = await channel.declare_queue(rig.topology.builder_queue, passive=True)
        assert queue.declaration_result.message_count == 0, "the command was acked, not left for redelivery"


async def test_a_create_without_reply_to_is_dead_lettered_before_anything_is_made(rig: BuilderRig) -> None:
    command = rig.create("conn-noreply")
    message = command_message(command, app_id="manager", reply_to="unused")
    message.reply_to = None  # nobody would ever receive the result, nor clean up the app
    await rig.publisher.publish(
        message, exchange=rig.topology.commands_exchange, routing_key=command.routing_key
    )
    dead = await _dead_letter(rig, within=20)
    assert dead.headers[H_REASON] == REASON_NO_REPLY_TO
    assert await rig.sim_apps("acme") == [], "no app was made for it"
    assert rig.sim.state.tokens.issued.get("jwt_bearer", 0) == 0


async def _dead_letter(rig: BuilderRig, *, within: float) -> Any:
    channel = await rig.amqp.channel()
    try:
        queue = await channel.get_queue(rig.topology.dead_queue, ensure=False)
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while loop.time() < end:
            msg = await queue.get(no_ack=True, fail=False)
            if msg is not None:
                return msg
            await asyncio.sleep(0.05)
        raise AssertionError(f"nothing dead-lettered within {within}s")
    finally:
        await channel.close()
