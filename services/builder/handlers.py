"""Command handlers: CreateConnection (DESIGN §4 steps 1 to 7), RefreshConnectionToken, DeleteConnection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import HttpUrl

from builder import provisioning
from builder.failures import failure_reply
from builder.leases import CONNECTION_LEASE_SECONDS, ConnectionBusy, ConnectionLeases
from builder.metrics import Metrics
from builder.minting import MAX_PROPAGATION_DELAY, Minter, PropagationPending
from builder.ports import SalesforcePort
from builder.provisioning import CA, ECA, AppCreator, fail, step
from builder.salesforce import apps, certs
from builder.salesforce.errors import OAuthError, SalesforceUnavailable
from builder.salesforce.jwt import audience_for
from builder.salesforce.oauth import TokenResponse
from builder.settings import BuilderSettings
from builder.store import ConnectionRecord, ConnectionStatus, IssuedReply, Store
from shared.amqp import Delivery
from shared.contracts import (
    AppKind,
    AppSummary,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionTokenRefreshed,
    Contract,
    CreateConnection,
    DeleteConnection,
    ErrorCode,
    RefreshConnectionToken,
    SealedToken,
    utcnow,
)
from shared.errors import RetryableError, SfconnectError
from shared.logging import get_logger
from shared.sealing import Sealer

log = get_logger(__name__)


@dataclass
class Handlers:
    """The Builder's command handlers, bound to their dependencies."""

    store: Store
    salesforce: SalesforcePort
    sealer: Sealer
    settings: BuilderSettings
    holder: str
    metrics: Metrics | None = None
    clock: Callable[[], datetime] = utcnow
    new_credential: Callable[[str], certs.Credential] = certs.new_credential
    lease_seconds: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.minter = Minter(self.salesforce, self.settings, self.clock, self.metrics)
        if not self.lease_seconds:
            self.lease_seconds = CONNECTION_LEASE_SECONDS
        self.leases = ConnectionLeases(self.store, self.holder, self.lease_seconds)

    def routes(self) -> Mapping[type[Contract], Callable[[Any, Delivery], Any]]:
        """The handler map for shared.amqp.Consumer."""
        return {
            CreateConnection: self._measured(self.create_connection),
            RefreshConnectionToken: self._measured(self.refresh_token),
            DeleteConnection: self._measured(self.delete_connection),
        }

    def _measured(self, fn: Callable[[Any, Delivery], Any]) -> Callable[[Any, Delivery], Any]:
        async def run(message: Any, delivery: Delivery) -> Any:
            outcome = "error"
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                reply = await fn(message, delivery)
                outcome = "ok"
                return reply
            except RetryableError as exc:
                outcome = "retry"
                if isinstance(exc, SalesforceUnavailable | ConnectionBusy) and exc.retry_after:
                    # Back off while Salesforce (or another worker) stays busy: base, 2x, 4x ... capped.
                    exc.retry_after = min(
                        MAX_PROPAGATION_DELAY, exc.retry_after * 2 ** min(6, delivery.attempt - 1)
                    )
                raise
            except SfconnectError as exc:
                outcome = exc.code
                raise
            finally:
                if self.metrics is not None:
                    self.metrics.commands.labels(message.message_type, outcome).inc()
                    self.metrics.command_seconds.labels(message.message_type).observe(loop.time() - started)

        return run

    def _lease(self, connection_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the connection's lease while the command runs (see :class:`builder.leases.ConnectionLeases`)."""
        return self.leases.hold(connection_id)

    async def close(self) -> None:
        """Stop background work (lease releases still being retried; the leases expire by themselves)."""
        await self.leases.close()

    def _check_recipient(self, key_id: str) -> None:
        if key_id not in self.sealer.public_keys:
            raise fail(
                ErrorCode.INVALID_COMMAND,
                f"recipient key {key_id!r} is not configured on the Builder (RECIPIENT_PUBLIC_KEYS); "
                "configure the Manager's public key there",
            )

    def _seal(self, token: str, key_id: str, connection_id: str, message_type: str) -> SealedToken:
        sealed = self.sealer.seal(
            token, key_id=key_id, connection_id=connection_id, message_type=message_type
        )
        return SealedToken(key_id=key_id, ciphertext=sealed)

    # -- CreateConnection ---------------------------------------------------------------------------

    async def create_connection(self, cmd: CreateConnection, delivery: Delivery) -> ConnectionCreated:
        """Steps 1 to 7: user, credential, permission set, app, read-back, JWT token, sealed reply."""
        self._check_recipient(cmd.recipient_key_id)
        async with self._lease(cmd.connection_id):
            record = await self.store.get_connection(cmd.connection_id)
            if record is not None:
                self._check_same(record, cmd)
                if record.reply is not None and record.reply.key_id == cmd.recipient_key_id:
                    log.info("create already done: replaying the reply sent before")
                    return self._created(record, record.reply)
            org = await self.salesforce.org(cmd.org_id)
            auth = org.authorization
            user = await provisioning.resolve_user(org, cmd.salesforce_username)
            if record is None:
                record = await self._new_record(cmd, auth.instance_url, auth.is_sandbox)
            record.user_id = user.id
            await provisioning.preauthorize(org, record, self.store)
            if record.status in (ConnectionStatus.PROVISIONING, ConnectionStatus.APP_REQUESTED):
                await AppCreator(org, self.store, self.settings, self.clock).ensure(record)
                if self.metrics is not None:
                    self.metrics.apps_created.labels(record.app_kind or "").inc()
            if record.status is ConnectionStatus.APP_CREATED:
                with step(ErrorCode.APP_CREATION_FAILED, f"reading back app {record.full_name}"):
                    found = await org.read_app(record.app_kind or ECA, record.full_name)
                record.consumer_key = provisioning.verify_readback(record, found, auth.org_id)
                record.status = ConnectionStatus.APP_VERIFIED
                await self.store.save_connection(record)
            # The deadline bounds how long the new app may stay unknown: it runs from the app's creation
            # (slow deploys and earlier retries do not eat it); the first delivery only if that is unknown.
            since = record.app_created_at or delivery.first_attempt_at
            token = await self.minter.mint(
                record, app_created_at=since, attempt=delivery.attempt, window=True
            )
            issued = self._issue(record, token, cmd.recipient_key_id, ConnectionCreated.message_type)
            await self.store.save_connection(record)
            log.info("connection created", app_kind=record.app_kind, app=record.full_name)
            return self._created(record, issued)

    def _check_same(self, record: ConnectionRecord, cmd: CreateConnection) -> None:
        if record.status is ConnectionStatus.DELETED:
            raise fail(
                ErrorCode.INVALID_COMMAND,
                f"connection {cmd.connection_id} was deleted; create a new connection instead",
            )
        if (
            record.org_id[:15] != cmd.org_id[:15]
            or record.username.lower() != cmd.salesforce_username.lower()
        ):
            raise fail(
                ErrorCode.INVALID_COMMAND,
                f"connection {cmd.connection_id} already exists for another org or username",
            )

    async def _new_record(
        self, cmd: CreateConnection, instance_url: str, is_sandbox: bool
    ) -> ConnectionRecord:
        name = apps.api_name(cmd.connection_id)
        credential = await asyncio.to_thread(self.new_credential, name)
        record = ConnectionRecord(
            connection_id=cmd.connection_id,
            org_id=cmd.org_id,
            username=cmd.salesforce_username,
            admin_email=str(cmd.admin_email),
            label=cmd.label,
            requested_kind=cmd.app_kind.value,
            full_name=name,
            permission_set_name=name,
            certificate_pem=credential.certificate_pem,
            private_key_pem=credential.private_key_pem,
            consumer_key=provisioning.new_consumer_key(),
            instance_url=instance_url,
            audience=audience_for(is_sandbox=is_sandbox, override=self.settings.jwt_audience),
        )
        await self.store.save_connection(record)
        return record

    def _issue(
        self, record: ConnectionRecord, token: TokenResponse, key_id: str, message_type: str
    ) -> IssuedReply:
        sealed = self._seal(token.access_token, key_id, record.connection_id, message_type)
        issued = IssuedReply(key_id, sealed.ciphertext, token.issued_at_datetime(), token.instance_url)
        record.reply = issued if message_type == ConnectionCreated.message_type else record.reply
        record.status = ConnectionStatus.ACTIVE
        record.last_access_token = token.access_token
        record.instance_url = token.instance_url or record.instance_url
        return issued

    def _created(self, record: ConnectionRecord, issued: IssuedReply) -> ConnectionCreated:
        return ConnectionCreated(
            connection_id=record.connection_id,
            app=AppSummary(
                kind=AppKind(record.app_kind or ECA),
                full_name=record.full_name,
                consumer_key=record.consumer_key,
            ),
            instance_url=HttpUrl(issued.instance_url),
            issued_at=issued.issued_at,
            sealed_token=SealedToken(key_id=issued.key_id, ciphertext=issued.sealed_token),
        )

    # -- RefreshConnectionToken ---------------------------------------------------------------------

    async def refresh_token(
        self, cmd: RefreshConnectionToken, delivery: Delivery
    ) -> ConnectionTokenRefreshed:
        """Mint a new token with the connection's stored key and app."""
        self._check_recipient(cmd.recipient_key_id)
        # The lease keeps a concurrent DeleteConnection from being overwritten by this refresh's save.
        async with self._lease(cmd.connection_id):
            record = await self.store.get_connection(cmd.connection_id)
            if record is None or record.status is ConnectionStatus.DELETED:
                raise fail(
                    ErrorCode.CONNECTION_NOT_FOUND, f"the Builder has no connection {cmd.connection_id}"
                )
            if record.status is not ConnectionStatus.ACTIVE or not record.private_key_pem:
                raise fail(
                    ErrorCode.INVALID_COMMAND,
                    f"connection {cmd.connection_id} is still being created; its first token comes with ConnectionCreated",
                )
            created = record.app_created_at or record.created_at or self.clock()
            young = self.clock() < created + timedelta(seconds=self.settings.propagation_deadline_seconds)
            token = await self.minter.mint(
                record, app_created_at=created, attempt=delivery.attempt, window=young
            )
            issued = self._issue(record, token, cmd.recipient_key_id, ConnectionTokenRefreshed.message_type)
            await self.store.save_connection(record)
            return ConnectionTokenRefreshed(
                connection_id=record.connection_id,
                instance_url=HttpUrl(issued.instance_url),
                issued_at=issued.issued_at,
                sealed_token=SealedToken(key_id=issued.key_id, ciphertext=issued.sealed_token),
            )

    # -- DeleteConnection ---------------------------------------------------------------------------

    async def delete_connection(self, cmd: DeleteConnection, delivery: Delivery) -> ConnectionDeleted:
        """Revoke the last token, delete the app and permission set, forget the key (idempotent)."""
        async with self._lease(cmd.connection_id):
            record = await self.store.get_connection(cmd.connection_id)
            if record is None:
                return ConnectionDeleted(connection_id=cmd.connection_id, app_existed=False)
            if record.status is ConnectionStatus.DELETED:
                return ConnectionDeleted(connection_id=cmd.connection_id, app_existed=record.app_existed)
            org = await self.salesforce.org(record.org_id)
            if record.last_access_token:
                try:
                    await self.salesforce.revoke(host=record.instance_url, token=record.last_access_token)
                except OAuthError as exc:  # deleting the app revokes its tokens anyway
                    log.info("token revoke refused", error=exc.error)
                record.last_access_token = None
                await self.store.save_connection(record)
            existed = False
            # No code is about deletion: app_creation_failed (the app's metadata was refused), the message
            # says it was the deletion and that the connection is not deleted yet.
            what = (
                f"deleting connection {cmd.connection_id} failed (its app {record.full_name} and permission set "
                f"{record.permission_set_name} may still exist; send the delete again once fixed)"
            )
            with step(ErrorCode.APP_CREATION_FAILED, what):
                if record.app_kind:
                    existed = await org.delete_app(record.app_kind, record.full_name)
                ps_id = record.permission_set_id or await org.find_permission_set(record.permission_set_name)
                if ps_id:
                    await org.delete_permission_set(ps_id)
            record.status, record.app_existed = ConnectionStatus.DELETED, existed
            record.private_key_pem, record.reply = None, None
            await self.store.save_connection(record)
            log.info("connection deleted", app=record.full_name, app_existed=record.app_existed)
            return ConnectionDeleted(connection_id=cmd.connection_id, app_existed=record.app_existed)


__all__ = ["CA", "ECA", "ConnectionBusy", "Handlers", "PropagationPending", "failure_reply"]
