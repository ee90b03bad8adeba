"""The services' real producing code, run over fakes of their own ports, capturing what they would publish.

Manager: ``ConnectionService.create`` / ``delete`` (the outbox builds CreateConnection / DeleteConnection and
sends them through ``Publisher.send_command``) and ``TokenService`` (builds RefreshConnectionToken and sends it
through ``RpcClient.call``). Builder: the ``shared.amqp.Consumer`` wired as the Builder wires it
(``Handlers.routes()`` and ``failure_reply``) consumes the Manager's captured commands; its handlers answer
through ``Publisher.send_reply``. Only the wire is replaced: :class:`CapturingPublisher` records the message,
exchange and routing key instead of publishing them to a broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import aio_pika
from builder.handlers import Handlers, failure_reply
from builder.ports import SfUser
from builder.store import OrgAuthorization
from manager.domain import ConnectionStatus
from manager.errors import BuilderUnavailable
from manager.metrics import Metrics
from manager.services import ConnectionService, NewConnection
from manager.tokens import TokenService

from shared.amqp import Consumer, Publisher, RpcClient, Topology, decode_message
from shared.contracts import REPLIES
from shared.crypto import Keyring, generate_key
from shared.sealing import Opener
from tests.contract.pact_messages import incoming_from, metadata_of
from tests.unit.builder_fakes import RECIPIENT_PRIVATE, FakeOrg, FakeSalesforce, FakeStore, make_settings
from tests.unit.manager_fakes import FakeClock, FakeConnections, FakeIntegrations

TOPOLOGY = Topology()
MANAGER_INSTANCE = "mgr-7"
ORG_ID = "00D000000000001EAA"
ACTIVE_USER = "ops+int@globex.com.sandbox"
INACTIVE_USER = "left@globex.com.sandbox"


@dataclass(frozen=True)
class Published:
    """One publish the producing code made."""

    message: aio_pika.Message
    exchange: str
    routing_key: str


class CapturingPublisher(Publisher):
    """The real :class:`shared.amqp.Publisher` (``send_command`` / ``send_reply`` build the messages) whose
    broker-facing ``publish`` records instead of sending."""

    def __init__(self, app_id: str) -> None:
        super().__init__(cast(Any, None), TOPOLOGY, app_id=app_id)
        self.sent: list[Published] = []

    async def publish(
        self, message: aio_pika.Message, *, exchange: str, routing_key: str, deadline: float | None = None
    ) -> None:
        self.sent.append(Published(message, exchange, routing_key))

    def take(self) -> Published:
        """The one message published since the last take."""
        assert len(self.sent) == 1, f"expected one publish, got {[p.message.type for p in self.sent]}"
        return self.sent.pop()


@dataclass
class Produced:
    """What each side published, by Pact interaction description."""

    commands: dict[str, Published] = field(default_factory=dict)
    replies: dict[str, Published] = field(default_factory=dict)


def _manager(publisher: CapturingPublisher, clock: FakeClock) -> tuple[ConnectionService, TokenService]:
    repo = FakeConnections()
    service = ConnectionService(
        repo=repo,
        integrations=FakeIntegrations(repo.outage),
        publisher=publisher,
        keyring=Keyring.parse(f"k1:{generate_key()}"),
        opener=Opener.parse(RECIPIENT_PRIVATE),  # the Builder's fake settings seal to this key
        replies_queue=TOPOLOGY.replies_queue,
        metrics=Metrics(),
        publish_grace=timedelta(seconds=10),
        republish_after=timedelta(seconds=120),
        clock=clock,
    )
    rpc = RpcClient(cast(Any, None), TOPOLOGY, publisher, instance_id=MANAGER_INSTANCE)
    # start() declares the reply queue on a broker; call() only checks that it ran, then publishes.
    rpc._channel = cast(Any, object())
    tokens = TokenService(
        connections=service,
        rpc=rpc,
        instance_id=MANAGER_INSTANCE,
        token_lifetime=timedelta(hours=1),
        rpc_deadline=0.2,  # nobody answers the RPC here: the command is captured, the call times out
        min_refresh_interval=timedelta(seconds=0),
        clock=clock,
    )
    return service, tokens


async def _builder(publisher: CapturingPublisher) -> tuple[Consumer, Handlers]:
    store = FakeStore()
    auth = OrgAuthorization(
        org_id=ORG_ID, user_id="005000000000009AAA", instance_url="https://globex--dev.sandbox.my.salesforce.com",
        login_url="https://test.salesforce.com", is_sandbox=True, scopes=["api", "refresh_token"],
        refresh_token="5Aep-refresh", access_token="00D000000000001!access",
    )  # fmt: skip
    await store.save_authorization(auth)
    org = FakeOrg(auth)
    org.users[ACTIVE_USER] = SfUser("005000000000001AAA", ACTIVE_USER, True)
    org.users[INACTIVE_USER] = SfUser("005000000000002AAA", INACTIVE_USER, False)
    settings = make_settings()
    handlers = Handlers(store, FakeSalesforce(store, {ORG_ID[:15]: org}), settings.sealer(), settings, "b-1")
    consumer = Consumer(
        cast(Any, None),
        TOPOLOGY,
        TOPOLOGY.builder_queue,
        handlers.routes(),
        publisher=publisher,
        failure_reply=failure_reply,
    )
    return consumer, handlers


async def _deliver(consumer: Consumer, command: Published) -> None:
    """Hand the Manager's command to the Builder's consumer as the broker would deliver it."""
    incoming = incoming_from(command.message.body, metadata_of(command.message))
    await consumer._on_message(incoming)  # the callback the Consumer registers with the broker
    assert incoming.settled == "ack", f"the Builder did not ack {command.message.type}: {incoming.settled}"


def _new(name: str, username: str) -> NewConnection:
    return NewConnection(
        name=name,
        org_id=ORG_ID,
        salesforce_username=username,
        admin_email="it@globex.example",
        label="Globex billing",
        app_kind="auto",
    )


async def produce() -> Produced:
    """Run the create → refresh → delete flow and a refused create through both services."""
    manager_out, builder_out = CapturingPublisher("manager"), CapturingPublisher("builder")
    clock = FakeClock()
    service, tokens = _manager(manager_out, clock)
    consumer, handlers = await _builder(builder_out)
    out = Produced()
    try:
        await _flow(service, tokens, consumer, manager_out, builder_out, clock, out)
    finally:
        await handlers.close()
    return out


async def _flow(
    service: ConnectionService,
    tokens: TokenService,
    consumer: Consumer,
    manager_out: CapturingPublisher,
    builder_out: CapturingPublisher,
    clock: FakeClock,
    out: Produced,
) -> None:

    conn = await service.create(_new("globex-billing", ACTIVE_USER), request_id="req-create")
    out.commands["a create-connection command"] = create = manager_out.take()
    await _deliver(consumer, create)
    out.replies["a connection-created reply"] = created = builder_out.take()
    await service.record_reply(
        decode_message(incoming_from(created.message.body, metadata_of(created.message)), REPLIES)
    )
    assert (await service.get(conn.id)).status is ConnectionStatus.ACTIVE

    clock.advance(60)
    try:  # what the token endpoint does after generated code got a 401 with the token
        await tokens.for_connection(conn.id, force_refresh=True, request_id="req-token")
    except BuilderUnavailable:
        pass  # no RPC reply queue here; what matters is the command the refresh published
    out.commands["a refresh-connection-token command"] = refresh = manager_out.take()
    await _deliver(consumer, refresh)
    out.replies["a connection-token-refreshed reply"] = builder_out.take()

    await service.delete(conn.id, request_id="req-delete")
    out.commands["a delete-connection command"] = delete = manager_out.take()
    await _deliver(consumer, delete)
    out.replies["a connection-deleted reply"] = builder_out.take()

    await service.create(_new("globex-leaver", INACTIVE_USER))
    await _deliver(consumer, manager_out.take())
    out.replies["a command-failed reply"] = builder_out.take()
