"""The Manager's use cases assembled over the fakes, and Builder replies made like the Builder makes them."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from manager.domain import Connection, ConnectionStatus

from shared.contracts import Contract
from shared.sealing import Sealer
from tests.unit.manager_fakes import (
    FakeClock,
    FakeConnections,
    FakeIntegrations,
    FakePublisher,
    FakeRpc,
    Keys,
    make_keys,
)

REPLIES_QUEUE = "t.manager.replies"
ORG_ID = "00D000000000001EAA"
SAMPLE_TOKEN = "00D000000000001!AQ4AQFakeAccessTokenValue.0123456789abcdef"


@dataclasses.dataclass
class World:
    """The use cases wired to fakes, plus the fakes for assertions."""

    connections: Any
    tokens: Any
    repo: FakeConnections
    integrations: FakeIntegrations
    publisher: FakePublisher
    rpc: FakeRpc
    keys: Keys
    clock: FakeClock
    metrics: Any


def make_world(
    *,
    rpc_answer: Callable[[Any], Awaitable[Contract]] | None = None,
    rpc_delay: float = 0.0,
    repo: FakeConnections | None = None,
    keys: Keys | None = None,
    clock: FakeClock | None = None,
    instance_id: str = "mgr-1",
    rpc_deadline: float = 2.0,
    min_refresh_interval: float = 5.0,
) -> World:
    from manager.metrics import Metrics
    from manager.services import ConnectionService
    from manager.tokens import TokenService

    keys = keys or make_keys()
    clock = clock or FakeClock()
    repo = repo or FakeConnections()
    integrations = FakeIntegrations(repo.outage)
    publisher = FakePublisher()
    metrics = Metrics()
    service = ConnectionService(
        repo=repo,
        integrations=integrations,
        publisher=publisher,
        keyring=keys.keyring,
        opener=keys.opener,
        replies_queue=REPLIES_QUEUE,
        metrics=metrics,
        publish_grace=timedelta(seconds=10),
        republish_after=timedelta(seconds=120),
        clock=clock,
    )

    async def default_answer(command: Any) -> Contract:
        return refreshed_reply(command.connection_id, keys.sealer, clock(), token=SAMPLE_TOKEN + "R")

    rpc = FakeRpc(rpc_answer or default_answer, delay=rpc_delay)
    tokens = TokenService(
        connections=service,
        rpc=rpc,
        instance_id=instance_id,
        token_lifetime=timedelta(seconds=3600),
        rpc_deadline=rpc_deadline,
        min_refresh_interval=timedelta(seconds=min_refresh_interval),
        poll_interval=0.01,
        clock=clock,
    )
    return World(service, tokens, repo, integrations, publisher, rpc, keys, clock, metrics)


def new_connection(name: str = "acme-prod") -> Any:
    from manager.services import NewConnection

    return NewConnection(
        name=name,
        org_id=ORG_ID,
        salesforce_username="integration@acme.com",
        admin_email="admin@acme.com",
        label="Acme production",
        app_kind="auto",
    )


def created_reply(
    connection_id: str, sealer: Sealer, issued_at: datetime, *, token: str = SAMPLE_TOKEN
) -> Any:
    from shared.contracts import AppSummary, ConnectionCreated, SealedToken

    sealed = sealer.seal(
        token, key_id="r1", connection_id=connection_id, message_type=ConnectionCreated.message_type
    )
    return ConnectionCreated(
        connection_id=connection_id,
        app=AppSummary(
            kind="external_client_app", full_name="SFC_" + connection_id[-8:], consumer_key="3MVG9" + "x" * 20
        ),
        instance_url="https://acme.my.salesforce.com",
        issued_at=issued_at,
        sealed_token=SealedToken(key_id="r1", ciphertext=sealed),
    )


def refreshed_reply(connection_id: str, sealer: Sealer, issued_at: datetime, *, token: str) -> Any:
    from shared.contracts import ConnectionTokenRefreshed, SealedToken

    sealed = sealer.seal(
        token, key_id="r1", connection_id=connection_id, message_type=ConnectionTokenRefreshed.message_type
    )
    return ConnectionTokenRefreshed(
        connection_id=connection_id,
        instance_url="https://acme.my.salesforce.com",
        issued_at=issued_at,
        sealed_token=SealedToken(key_id="r1", ciphertext=sealed),
    )


async def active_connection(world: World, name: str = "acme-prod") -> Connection:
    """Create a connection and apply a ConnectionCreated reply to it."""
    conn = await world.connections.create(new_connection(name))
    await world.connections.record_reply(created_reply(conn.id, world.keys.sealer, world.clock()))
    got = await world.repo.get(conn.id)
    assert got is not None and got.status is ConnectionStatus.ACTIVE
    return got
