"""A Builder test double that speaks the real contract over the real broker.

It consumes ``builder.commands`` with ``shared.amqp.Consumer`` and answers like the Builder would: a
``ConnectionCreated`` / ``ConnectionTokenRefreshed`` with a token sealed by ``shared.sealing.Sealer`` to
the Manager's public key, a ``ConnectionDeleted``, or a ``CommandFailed``. Every minted token is kept so
tests can look for it where it must not be.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from shared.amqp import Consumer, Delivery, Publisher, Topology, connect
from shared.contracts import (
    AppSummary,
    CommandFailed,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionTokenRefreshed,
    Contract,
    CreateConnection,
    DeleteConnection,
    ErrorCode,
    ErrorDetail,
    RefreshConnectionToken,
    SealedToken,
    utcnow,
)
from shared.sealing import Sealer

INSTANCE_URL = "https://acme-dev-ed.my.salesforce.com"


@dataclass
class BuilderDouble:
    """Answers commands; ``fail_usernames`` get CommandFailed, ``fail_refreshes`` refuse refreshes of
    those connections, ``silent_once`` ignores one create each, ``hold_creates`` delays create replies
    until it is set."""

    amqp_url: str
    topology: Topology
    sealer: Sealer
    refresh_delay: float = 0.0
    hold_creates: asyncio.Event | None = None
    fail_usernames: dict[str, ErrorCode] = field(default_factory=dict)
    fail_refreshes: dict[str, ErrorCode] = field(default_factory=dict)  # by connection id
    silent_once: set[str] = field(default_factory=set)
    received: list[tuple[Contract, Delivery]] = field(default_factory=list)
    minted: list[str] = field(default_factory=list)
    _conn: Any = None
    _consumer: Consumer | None = None

    def commands(self, kind: type[Contract]) -> list[Any]:
        return [c for c, _ in self.received if isinstance(c, kind)]

    def _mint(self) -> str:
        token = f"00D000000000001!AQ4AQ{secrets.token_urlsafe(40)}"
        self.minted.append(token)
        return token

    def _sealed(self, connection_id: str, key_id: str, message_type: str) -> SealedToken:
        sealed = self.sealer.seal(
            self._mint(), key_id=key_id, connection_id=connection_id, message_type=message_type
        )
        return SealedToken(key_id=key_id, ciphertext=sealed)

    async def _create(self, cmd: CreateConnection, delivery: Delivery) -> Contract | None:
        self.received.append((cmd, delivery))
        if self.hold_creates is not None:
            await self.hold_creates.wait()
        if cmd.connection_id in self.silent_once:
            self.silent_once.discard(cmd.connection_id)
            return None
        code = self.fail_usernames.get(cmd.salesforce_username)
        if code is not None:
            return CommandFailed(
                connection_id=cmd.connection_id,
                command_type=CreateConnection.message_type,
                error=ErrorDetail(code=code, message=f"{code.value} for {cmd.salesforce_username}"),
            )
        return ConnectionCreated(
            connection_id=cmd.connection_id,
            app=AppSummary(
                kind="external_client_app",
                full_name=f"SFC_{cmd.connection_id.replace('-', '_')}"[:80],
                consumer_key="3MVG9" + secrets.token_hex(20),
            ),
            instance_url=INSTANCE_URL,
            issued_at=utcnow(),
            sealed_token=self._sealed(
                cmd.connection_id, cmd.recipient_key_id, ConnectionCreated.message_type
            ),
        )

    async def _refresh(self, cmd: RefreshConnectionToken, delivery: Delivery) -> Contract:
        self.received.append((cmd, delivery))
        if self.refresh_delay:
            await asyncio.sleep(self.refresh_delay)
        code = self.fail_refreshes.get(cmd.connection_id)
        if code is not None:
            return CommandFailed(
                connection_id=cmd.connection_id,
                command_type=RefreshConnectionToken.message_type,
                error=ErrorDetail(code=code, message=f"{code.value}: the user cannot log in"),
            )
        return ConnectionTokenRefreshed(
            connection_id=cmd.connection_id,
            instance_url=INSTANCE_URL,
            issued_at=utcnow(),
            sealed_token=self._sealed(
                cmd.connection_id, cmd.recipient_key_id, ConnectionTokenRefreshed.message_type
            ),
        )

    async def _delete(self, cmd: DeleteConnection, delivery: Delivery) -> Contract:
        self.received.append((cmd, delivery))
        return ConnectionDeleted(connection_id=cmd.connection_id)

    async def start(self) -> None:
        self._conn = await connect(self.amqp_url, name="builder-double")
        channel = await self._conn.channel()
        await self.topology.declare_builder(channel)
        await channel.close()
        publisher = Publisher(self._conn, self.topology, app_id="builder")
        await publisher.start()
        self._consumer = Consumer(
            self._conn,
            self.topology,
            self.topology.builder_queue,
            {
                CreateConnection: self._create,
                RefreshConnectionToken: self._refresh,
                DeleteConnection: self._delete,
            },
            publisher=publisher,
            prefetch=16,
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop(drain_timeout=5)
        if self._conn is not None:
            await self._conn.close()
