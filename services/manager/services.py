"""Use cases for connections: create, read, delete, integrations and Builder replies.

Entry points (HTTP views, the replies consumer, the sweeper) call these; they talk to storage and the
broker only through the ports below.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from manager.domain import (
    ACCESS_TOKEN_FIELD,
    AppInfo,
    Connection,
    ConnectionStatus,
    StoredToken,
)
from manager.errors import (
    ConnectionNotActive,
    ConnectionNotFound,
    IdempotencyKeyReused,
    IntegrationNotFound,
    InvalidTransition,
)
from manager.metrics import Metrics
from manager.outbox import Outbox
from manager.ports import Clock, CommandPublisher, utc_now_ms
from manager.repository import ConnectionRepository, Integration, IntegrationRepository, update_with_cas
from shared.contracts import (
    CommandFailed,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionTokenRefreshed,
    Contract,
    CreateConnection,
    DeleteConnection,
)
from shared.crypto import Keyring
from shared.logging import get_logger
from shared.sealing import Opener, SealingError

log = get_logger("manager.services")


def new_connection_id(now: datetime) -> str:
    """A sortable id: creation time in milliseconds, then 40 random bits."""
    return f"con_{int(now.timestamp() * 1000):012x}{secrets.token_hex(5)}"


@dataclass(frozen=True)
class NewConnection:
    """What a caller asks for when creating a connection (already validated by the transport)."""

    name: str
    org_id: str
    salesforce_username: str
    admin_email: str
    label: str
    app_kind: str


class ConnectionService:
    """Creating, reading and deleting connections, and recording what the Builder answers."""

    def __init__(
        self,
        *,
        repo: ConnectionRepository,
        integrations: IntegrationRepository,
        publisher: CommandPublisher,
        keyring: Keyring,
        opener: Opener,
        replies_queue: str,
        metrics: Metrics,
        publish_grace: timedelta,
        republish_after: timedelta,
        clock: Clock = utc_now_ms,
    ) -> None:
        self.repo = repo
        self.integrations = integrations
        self.publisher = publisher
        self.keyring = keyring
        self.opener = opener
        self.replies_queue = replies_queue
        self.metrics = metrics
        self.publish_grace = publish_grace
        self.republish_after = republish_after
        self.clock = clock
        self.outbox = Outbox(
            repo=repo,
            publisher=publisher,
            opener=opener,
            replies_queue=replies_queue,
            metrics=metrics,
            publish_grace=publish_grace,
            republish_after=republish_after,
            clock=clock,
        )

    async def sweep_once(self, *, limit: int = 100) -> int:
        """Re-publish commands recorded but not published, or unanswered for too long; returns how many."""
        return await self.outbox.sweep_once(limit=limit)

    # -- use cases called by the HTTP API -----------------------------------------------------------

    async def create(
        self,
        new: NewConnection,
        *,
        request_id: str | None = None,
        idempotency_ref: str | None = None,
        idempotency_fingerprint: str | None = None,
    ) -> Connection:
        """Record a ``pending`` connection with its create command, then publish the command.

        ``idempotency_ref`` (the scoped Idempotency-Key) and the request body's fingerprint are stored
        with it, so that a retry of a request that died after this write finds the connection
        (:meth:`created_under`) instead of a name clash, and a request with another body does not.
        """
        now = self.clock()
        conn = Connection.new(
            id=new_connection_id(now),
            name=new.name,
            org_id=new.org_id,
            salesforce_username=new.salesforce_username,
            admin_email=new.admin_email,
            label=new.label,
            app_kind=new.app_kind,
            command=self.outbox.record(CreateConnection.message_type, now),
            now=now,
        )
        await self.repo.add(
            conn, idempotency_ref=idempotency_ref, idempotency_fingerprint=idempotency_fingerprint
        )
        log.info("connection recorded", connection_id=conn.id, name=conn.name)
        assert conn.command is not None
        await self.outbox.publish(conn, conn.command.message_id, request_id=request_id)
        return conn

    async def created_under(
        self, idempotency_ref: str, *, fingerprint: str, new: NewConnection
    ) -> Connection | None:
        """The connection a request with this scoped Idempotency-Key recorded, if it got that far.

        Raises :class:`IdempotencyKeyReused` when that request had another body (the key's record may
        have expired or been claimed afresh since). A connection recorded before fingerprints were stored
        is compared field by field instead.
        """
        found = await self.repo.find_by_idempotency_ref(idempotency_ref)
        if found is None:
            return None
        conn, stored = found
        same = stored == fingerprint if stored is not None else _request_of(conn) == new
        if not same:
            raise IdempotencyKeyReused("this Idempotency-Key was already used with a different request body")
        return conn

    async def get(self, connection_id: str) -> Connection:
        conn = await self.repo.get(connection_id)
        if conn is None:
            raise ConnectionNotFound(f"no connection with id {connection_id!r}")
        return conn

    async def page(
        self, *, limit: int, after: str | None, statuses: frozenset[ConnectionStatus] | None = None
    ) -> tuple[list[Connection], str | None]:
        """One page of connections in creation order and the cursor of the next page (None at the end);
        only those in ``statuses`` when given."""
        page = await self.repo.page(limit=limit + 1, after=after, statuses=statuses)
        if len(page) > limit:
            return page[:limit], page[limit - 1].id
        return page, None

    async def delete(self, connection_id: str, *, request_id: str | None = None) -> Connection:
        """active|failed → deleting and publish DeleteConnection; repeating it is harmless."""
        now = self.clock()

        def change(conn: Connection) -> Connection | None:
            if conn.status is ConnectionStatus.DELETED:
                return None
            if conn.status is ConnectionStatus.DELETING:
                if conn.command is not None:
                    return None  # already on its way
                return conn.retry_deletion(
                    command=self.outbox.record(DeleteConnection.message_type, now), now=now
                )
            if conn.status is ConnectionStatus.PENDING:
                raise InvalidTransition(
                    f"connection {conn.id} is still being created; delete it once it is active or failed"
                )
            return conn.begin_deletion(
                command=self.outbox.record(DeleteConnection.message_type, now), now=now
            )

        conn, changed = await update_with_cas(self.repo, connection_id, change)
        if changed and conn.command is not None:
            await self.outbox.publish(conn, conn.command.message_id, request_id=request_id)
        return conn

    async def associate(self, integration: str, connection_id: str) -> Integration:
        """Bind an integration (by name) to a connection that is not deleted."""
        conn = await self.get(connection_id)
        if conn.status in (ConnectionStatus.DELETING, ConnectionStatus.DELETED):
            raise ConnectionNotActive(f"connection {conn.id} is {conn.status}")
        return await self.integrations.associate(integration, conn.id, now=self.clock())

    async def integration(self, name: str) -> Integration:
        found = await self.integrations.get(name)
        if found is None:
            raise IntegrationNotFound(f"no integration named {name!r}")
        return found

    # -- replies from the Builder -------------------------------------------------------------------

    def open_token(self, conn_id: str, reply: ConnectionCreated | ConnectionTokenRefreshed) -> StoredToken:
        """Open the sealed token and encrypt it at rest (the plaintext lives only in this call)."""
        plaintext = self.opener.open(
            reply.sealed_token.ciphertext,
            key_id=reply.sealed_token.key_id,
            connection_id=conn_id,
            message_type=reply.message_type,
        )
        ciphertext = self.keyring.encrypt(plaintext, record_id=conn_id, field=ACCESS_TOKEN_FIELD)
        return StoredToken(ciphertext=ciphertext, issued_at=_ms(reply.issued_at), stored_at=self.clock())

    async def record_reply(self, reply: Contract) -> None:
        """Apply a Builder reply to its connection; unknown connections raise ConnectionNotFound."""
        connection_id: str = reply.connection_id  # type: ignore[attr-defined]
        now = self.clock()

        def change(conn: Connection) -> Connection | None:
            if isinstance(reply, ConnectionCreated):
                if conn.status is not ConnectionStatus.PENDING:
                    return None  # duplicate or late: the first reply won
                try:
                    token = self.open_token(conn.id, reply)
                except SealingError as exc:
                    return conn.fail(code=exc.code, message=str(exc), now=now)
                app = AppInfo(reply.app.kind.value, reply.app.full_name, reply.app.consumer_key)
                return conn.activate(app=app, instance_url=_url(reply.instance_url), token=token, now=now)
            if isinstance(reply, ConnectionTokenRefreshed):
                newer = conn.token is None or reply.issued_at > conn.token.issued_at
                if conn.status is not ConnectionStatus.ACTIVE or not newer:
                    return None
                token = self.open_token(conn.id, reply)
                return conn.with_token(token=token, instance_url=_url(reply.instance_url), now=now)
            if isinstance(reply, ConnectionDeleted):
                if conn.status is not ConnectionStatus.DELETING:
                    return None
                return conn.finish_deletion(now=now)
            if isinstance(reply, CommandFailed):
                code, message = reply.error.code.value, reply.error.message
                if (
                    reply.command_type == CreateConnection.message_type
                    and conn.status is ConnectionStatus.PENDING
                ):
                    return conn.fail(code=code, message=message, now=now)
                if reply.command_type == DeleteConnection.message_type and conn.command is not None:
                    if conn.status is ConnectionStatus.DELETING:
                        return conn.delete_failed(code=code, message=message, now=now)
                return None
            raise TypeError(f"not a reply: {type(reply).__name__}")

        try:
            conn, changed = await update_with_cas(self.repo, connection_id, change)
        except ConnectionNotFound:
            self.metrics.replies.labels(reply.message_type, "unknown_connection").inc()
            raise
        outcome = "applied" if changed else "ignored"
        self.metrics.replies.labels(reply.message_type, outcome).inc()
        log.info("reply " + outcome, connection_id=conn.id, type=reply.message_type, status=conn.status.value)


def _request_of(conn: Connection) -> NewConnection:
    """What was asked for to create ``conn``."""
    return NewConnection(
        name=conn.name,
        org_id=conn.org_id,
        salesforce_username=conn.salesforce_username,
        admin_email=conn.admin_email,
        label=conn.label,
        app_kind=conn.app_kind,
    )


def _ms(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


def _url(value: object) -> str:
    return str(value).rstrip("/")
