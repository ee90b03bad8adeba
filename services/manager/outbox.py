"""The outbox: a command is recorded on its connection (with its message id) before it is published,
marked ``published_at`` once the broker confirmed it, and re-published by the sweeper when it was never
published or stays unanswered past a deadline (the Builder's idempotency makes a second copy harmless)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from manager.domain import CommandRecord, Connection, ConnectionStatus
from manager.metrics import Metrics
from manager.ports import Clock, CommandPublisher
from manager.repository import ConnectionRepository, update_with_cas
from shared.contracts import Contract, CreateConnection, DeleteConnection
from shared.logging import get_logger
from shared.sealing import Opener

log = get_logger("manager.outbox")

# Confirmed publishes without an answer before giving up: with PENDING_REPUBLISH_SECONDS=120 about an
# hour of the Builder being reachable (well past its 15-minute propagation deadline). Publishes the broker
# refused (an outage) do not count: the Builder never saw them, and giving up would orphan the app it
# goes on to create once the command gets through.
MAX_ATTEMPTS = 30
NO_REPLY = "builder_no_reply"


class Outbox:
    """Publishing recorded commands and sweeping the ones left behind."""

    def __init__(
        self,
        *,
        repo: ConnectionRepository,
        publisher: CommandPublisher,
        opener: Opener,
        replies_queue: str,
        metrics: Metrics,
        publish_grace: timedelta,
        republish_after: timedelta,
        clock: Clock,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.repo = repo
        self.publisher = publisher
        self.opener = opener
        self.replies_queue = replies_queue
        self.metrics = metrics
        self.publish_grace = publish_grace
        self.republish_after = republish_after
        self.clock = clock
        self.max_attempts = max_attempts

    def command_for(self, conn: Connection) -> Contract:
        """The command a connection's outbox entry stands for (rebuilt from the connection)."""
        if conn.status is ConnectionStatus.DELETING:
            return DeleteConnection(connection_id=conn.id)
        return CreateConnection(
            connection_id=conn.id,
            org_id=conn.org_id,
            salesforce_username=conn.salesforce_username,
            admin_email=conn.admin_email,
            label=conn.label,
            app_kind=conn.app_kind,  # type: ignore[arg-type]
            recipient_key_id=self.opener.active_kid,
        )

    async def publish(self, conn: Connection, message_id: str, *, request_id: str | None) -> None:
        """Publish the recorded command; on failure leave it unpublished for the sweeper."""
        command = self.command_for(conn)
        try:
            await self.publisher.send_command(
                command, reply_to=self.replies_queue, request_id=request_id, message_id=message_id
            )
        except Exception as exc:  # any broker trouble: the outbox record makes the sweeper try again
            self.metrics.commands_published.labels(command.message_type, "failed").inc()
            log.warning(
                "command not published; the sweeper will retry",
                connection_id=conn.id,
                command_type=command.message_type,
                error=f"{type(exc).__name__}: {exc}",
            )
            return
        self.metrics.commands_published.labels(command.message_type, "ok").inc()
        log.info("command published", connection_id=conn.id, command_id=message_id, type=command.message_type)
        try:
            await self.repo.mark_published(conn.id, message_id, at=self.clock())
        except Exception as exc:  # the command is out; at worst the sweeper publishes it once more
            log.warning("could not mark command published", connection_id=conn.id, error=type(exc).__name__)

    async def _give_up(self, conn: Connection, now: datetime) -> None:
        """The Builder never answered: record that on the connection instead of publishing forever."""
        assert conn.command is not None
        publishes, kind, expected = conn.command.publishes, conn.command.type, conn.command.message_id
        message = f"the Builder did not answer {kind} after {publishes} confirmed publishes"

        def change(current: Connection) -> Connection | None:
            if current.command is None or current.command.message_id != expected:
                return None  # answered or re-published meanwhile
            if current.status is ConnectionStatus.PENDING:
                return current.fail(code=NO_REPLY, message=message, now=now)
            return current.delete_failed(code=NO_REPLY, message=message, now=now)

        _, changed = await update_with_cas(self.repo, conn.id, change)
        if changed:
            log.warning(
                "gave up on an unanswered command", connection_id=conn.id, type=kind, publishes=publishes
            )

    def record(self, kind: str, now: datetime) -> CommandRecord:
        """A new outbox entry for a command of type ``kind``, with its message id."""
        return CommandRecord(message_id=str(uuid.uuid4()), type=kind, recorded_at=now)

    async def sweep_once(self, *, limit: int = 100) -> int:
        """Re-publish commands recorded but not published, or unanswered for too long; returns how many."""
        now = self.clock()
        due = await self.repo.due_commands(
            recorded_before=now - self.publish_grace, published_before=now - self.republish_after, limit=limit
        )
        sent = 0
        for conn in due:
            assert conn.command is not None
            if conn.command.published_at is not None and conn.command.publishes >= self.max_attempts:
                await self._give_up(conn, now)
                continue
            message_id = str(uuid.uuid4())
            if not await self.repo.claim_command(
                conn.id, conn.command.message_id, new_message_id=message_id, now=now
            ):
                continue  # another replica's sweeper took it
            log.info(
                "sweeper re-publishing command",
                connection_id=conn.id,
                type=conn.command.type,
                attempt=conn.command.attempts + 1,
            )
            await self.publish(conn, message_id, request_id=None)
            self.metrics.sweeps.inc()
            sent += 1
        return sent
