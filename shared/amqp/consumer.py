"""The consumer wrapper: decode → validate → dispatch → reply → ack, and the one place that decides
what happens to a message when something goes wrong.

- Undecodable (``MalformedMessage``: bad content type, unknown type, bad JSON, schema violation) →
  dead-lettered with ``x-sfconnect-reason``/``x-sfconnect-detail``; never requeued.
- With ``require_reply_to`` (a consumer of commands, whose results are replies): a message without
  ``reply_to`` → dead-lettered ``no_reply_to``, and one with neither ``correlation_id`` nor ``message_id``
  → ``no_correlation_id``, before the handler runs (nobody could receive or match its result).
- Handler returns a reply → published to ``reply_to`` with the command's correlation id, then ack.
- Handler raises ``RetryableError`` → republished (confirmed) to the smallest delay tier ≥ ``retry_after``
  with ``x-sfconnect-attempt`` + 1 and the same first-attempt time, then the original is acked; at
  ``max_attempts`` → ``failure_reply`` published (when it gives one) and dead-lettered ``retries_exhausted``.
- Handler raises another ``SfconnectError`` (permanent) → ``failure_reply`` published, then ack; with no
  failure reply → dead-lettered with reason = the error's code.
- Any other exception → handled as retryable with code ``internal_error``; traceback logged without locals.
- ``CancelledError`` (connection lost mid-handler) → not acked: the broker redelivers it.
A handler exception never stops the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from shared.amqp.errors import AmqpError, Unroutable
from shared.amqp.message import (
    H_ATTEMPT,
    H_DETAIL,
    H_FIRST_ATTEMPT_AT,
    H_ORIGINAL_MESSAGE_ID,
    H_REASON,
    H_SOURCE_QUEUE,
    Delivery,
    clip,
    copy_for_republish,
    decode_message,
    delivery_of,
)
from shared.amqp.publisher import Publisher
from shared.amqp.topology import Topology
from shared.contracts import Contract, MalformedMessage
from shared.errors import RetryableError, SfconnectError
from shared.logging import get_logger, redact_text

log = get_logger(__name__)

Handler = Callable[[Any, Delivery], Awaitable[Contract | None]]
FailureReply = Callable[[Any, Delivery, SfconnectError], Contract | None]
REASON_RETRIES_EXHAUSTED = "retries_exhausted"
REASON_NO_REPLY_TO = "no_reply_to"
REASON_NO_CORRELATION_ID = "no_correlation_id"


class Consumer:
    """Consumes one queue with a handler per contract type."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        topology: Topology,
        queue_name: str,
        handlers: Mapping[type[Contract], Handler],
        *,
        publisher: Publisher,
        prefetch: int = 8,
        max_attempts: int = 10,
        failure_reply: FailureReply | None = None,
        require_reply_to: bool = False,
    ) -> None:
        if not handlers:
            raise ValueError("a consumer needs at least one handler")
        self.connection = connection
        self.topology = topology
        self.queue_name = queue_name
        self.handlers = dict(handlers)
        self.publisher = publisher
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.failure_reply = failure_reply
        self.require_reply_to = require_reply_to
        self._accept = tuple(self.handlers)
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._inflight: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Open a channel, set QoS on it, declare the queue (canonical arguments) and start consuming."""
        self._channel = await self.connection.channel(publisher_confirms=False)
        await self._channel.set_qos(prefetch_count=self.prefetch)
        try:
            self._queue = await self.topology.declare_queue(self._channel, self.queue_name)
        except KeyError:
            self._queue = await self._channel.declare_queue(self.queue_name, passive=True)
        assert self._queue is not None
        self._tag = await self._queue.consume(self._on_message, no_ack=False)
        log.info("consumer started", queue=self.queue_name, prefetch=self.prefetch)

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop taking messages, let in-flight ones finish (up to ``drain_timeout``), close the channel."""
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._tag), timeout=5)
        self._tag = None
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=drain_timeout)
            if pending:
                log.warning(
                    "consumer stopped with handlers still running",
                    queue=self.queue_name,
                    unfinished=len(pending),
                )
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()
        self._channel = None

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # -- one message -----------------------------------------------------------------------------
    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        delivery = delivery_of(incoming)
        try:
            with structlog.contextvars.bound_contextvars(
                command_id=delivery.correlation_id,
                message_id=delivery.message_id,
                request_id=delivery.request_id,
                message_type=delivery.message_type,
                queue=self.queue_name,
            ):
                await self._process(incoming, delivery)
        except asyncio.CancelledError:
            log.warning(
                "handler cancelled (connection lost?): the broker will redeliver",
                queue=self.queue_name,
                command_id=delivery.correlation_id,
                message_type=delivery.message_type,
            )
            raise
        except Exception:
            # A bug in this wrapper: never leave the message unacked forever, never loop on it.
            log.exception(
                "consumer wrapper failed; rejecting to the dead-letter queue", queue=self.queue_name
            )
            await self._settle(incoming.reject(requeue=False))
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _process(self, incoming: AbstractIncomingMessage, delivery: Delivery) -> None:
        try:
            message = decode_message(incoming, self._accept)
        except MalformedMessage as exc:
            log.warning("undecodable message dead-lettered", reason=exc.reason, detail=exc.detail)
            await self._dead_letter(incoming, exc.reason, exc.detail)
            return
        if self.require_reply_to and (refusal := self._unanswerable(delivery)) is not None:
            reason, detail = refusal
            log.warning("command without a reply address dead-lettered", reason=reason)
            await self._dead_letter(incoming, reason, detail)
            return
        handler = self.handlers[type(message)]
        with structlog.contextvars.bound_contextvars(connection_id=getattr(message, "connection_id", None)):
            try:
                reply = await handler(message, delivery)
            except RetryableError as exc:
                await self._retry(incoming, message, delivery, exc)
            except SfconnectError as exc:
                await self._permanent(incoming, message, delivery, exc)
            except Exception as exc:
                log.exception("handler raised an unexpected error; retrying", attempt=delivery.attempt)
                error = RetryableError(
                    f"unexpected {type(exc).__name__} in the handler", code="internal_error"
                )
                await self._retry(incoming, message, delivery, error)
            else:
                if reply is not None and not await self._send_reply(incoming, delivery, reply):
                    return
                await self._settle(incoming.ack())

    @staticmethod
    def _unanswerable(delivery: Delivery) -> tuple[str, str] | None:
        """Why nobody could receive this command's result (reason, detail), or None when someone can."""
        if not delivery.reply_to:
            return REASON_NO_REPLY_TO, "a command must name the queue for its reply in reply_to"
        if not delivery.correlation_id:
            return REASON_NO_CORRELATION_ID, "a command must carry a correlation_id (or a message_id)"
        return None

    # -- outcomes --------------------------------------------------------------------------------
    async def _retry(
        self, incoming: AbstractIncomingMessage, message: Any, delivery: Delivery, error: RetryableError
    ) -> None:
        if delivery.attempt >= self.max_attempts:
            log.warning("retries exhausted", attempt=delivery.attempt, code=error.code)
            reply = self._failure_reply(message, delivery, error)
            if reply is not None and not await self._send_reply(incoming, delivery, reply):
                return
            await self._dead_letter(incoming, REASON_RETRIES_EXHAUSTED, f"{error.code}: {error.message}")
            return
        tier = self.topology.retry_tier(error.retry_after)
        copy = copy_for_republish(
            incoming,
            extra_headers={
                H_ATTEMPT: delivery.attempt + 1,
                H_FIRST_ATTEMPT_AT: delivery.first_attempt_at.isoformat(),
                H_SOURCE_QUEUE: self.queue_name,
            },
        )
        try:
            await self.publisher.publish(
                copy, exchange=self.topology.retry_exchange(tier), routing_key=self.queue_name
            )
        except AmqpError as exc:
            log.warning("could not schedule the retry; requeueing", error=str(exc))
            await self._settle(incoming.nack(requeue=True))
            return
        log.info("retry scheduled", attempt=delivery.attempt + 1, delay_s=tier, code=error.code)
        await self._settle(incoming.ack())

    async def _permanent(
        self, incoming: AbstractIncomingMessage, message: Any, delivery: Delivery, error: SfconnectError
    ) -> None:
        log.info("command failed permanently", code=error.code)
        reply = self._failure_reply(message, delivery, error)
        if reply is None or not delivery.reply_to:
            await self._dead_letter(incoming, error.code, error.message)
            return
        if await self._send_reply(incoming, delivery, reply):
            await self._settle(incoming.ack())

    def _failure_reply(self, message: Any, delivery: Delivery, error: SfconnectError) -> Contract | None:
        if self.failure_reply is None:
            return None
        try:
            return self.failure_reply(message, delivery, error)
        except Exception:
            log.exception("failure_reply raised; no failure reply sent")
            return None

    async def _send_reply(
        self, incoming: AbstractIncomingMessage, delivery: Delivery, reply: Contract
    ) -> bool:
        """Publish ``reply``; False when the message was requeued instead (the caller must not ack)."""
        if not delivery.reply_to:
            log.warning("no reply_to on the message: reply dropped", reply_type=reply.message_type)
            return True
        try:
            await self.publisher.send_reply(
                reply,
                reply_to=delivery.reply_to,
                correlation_id=delivery.correlation_id,
                request_id=delivery.request_id,
            )
        except Unroutable:
            # The reply queue is gone (e.g. an RPC queue that expired with its Manager replica).
            log.warning("reply queue does not exist: reply dropped", reply_to=delivery.reply_to)
            return True
        except AmqpError as exc:
            log.warning("reply not published; requeueing the message", error=str(exc))
            await self._settle(incoming.nack(requeue=True))
            return False
        return True

    async def _dead_letter(self, incoming: AbstractIncomingMessage, reason: str, detail: str) -> None:
        copy = copy_for_republish(
            incoming,
            extra_headers={
                H_REASON: reason,
                H_DETAIL: clip(redact_text(detail)),
                H_SOURCE_QUEUE: self.queue_name,
                H_ORIGINAL_MESSAGE_ID: incoming.message_id or "",
            },
        )
        try:
            await self.publisher.publish(
                copy, exchange=self.topology.dead_exchange, routing_key=self.queue_name
            )
        except AmqpError as exc:
            # Let the broker dead-letter it instead (x-death reason "rejected"): it must not loop.
            log.warning("dead-letter publish failed; rejecting", error=str(exc), reason=reason)
            await self._settle(incoming.reject(requeue=False))
            return
        await self._settle(incoming.ack())

    async def _settle(self, outcome: Awaitable[Any]) -> None:
        """Ack / nack / reject, tolerating a channel that died meanwhile (the broker redelivers then)."""
        try:
            await outcome
        except Exception as exc:
            log.warning("could not settle the message (channel closed?)", error=type(exc).__name__)
