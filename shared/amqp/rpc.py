"""Request/reply over the per-replica reply queue ``manager.rpc.<instance>``.

The command's ``message_id`` is its ``correlation_id``; a future per pending call is matched by the
reply's ``correlation_id``. A late or unknown reply is handed to ``on_unmatched`` when one is given (the
Manager keeps a token minted for a call that had already timed out), else dropped with a log line; a
malformed reply fails its call with ``MalformedMessage``. When the connection is lost every pending call fails at once with
``RpcConnectionLost`` (the reply might still come; the caller decides whether to retry, and the Builder's
handlers are idempotent). The queue is durable with ``x-expires`` and not exclusive, so it survives
reconnects and broker restarts and is restored by the robust channel together with its consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from shared.amqp.errors import BrokerUnavailable, PublishTimeout, RpcConnectionLost, RpcTimeout
from shared.amqp.message import decode_message, new_message_id
from shared.amqp.publisher import Publisher
from shared.amqp.topology import Topology
from shared.contracts import REPLIES, Contract, MalformedMessage
from shared.logging import get_logger

log = get_logger(__name__)


class RpcClient:
    """Sends a command and waits for its reply on this replica's reply queue."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        topology: Topology,
        publisher: Publisher,
        *,
        instance_id: str,
        replies: tuple[type[Contract], ...] = REPLIES,
        on_unmatched: Callable[[Contract], Awaitable[None]] | None = None,
    ) -> None:
        self.connection = connection
        self.topology = topology
        self.publisher = publisher
        self.instance_id = instance_id
        self.queue_name = topology.rpc_queue(instance_id)
        self._replies = replies
        self._on_unmatched = on_unmatched
        self._pending: dict[str, asyncio.Future[Contract]] = {}
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None

    async def start(self) -> None:
        """Declare this replica's reply queue and consume it; fail pending calls on connection loss."""
        self._channel = await self.connection.channel(publisher_confirms=False)
        await self._channel.set_qos(prefetch_count=64)
        self._queue = await self.topology.declare_queue(self._channel, self.queue_name)
        assert self._queue is not None
        self._tag = await self._queue.consume(self._on_reply, no_ack=False)
        self.connection.close_callbacks.add(self._on_connection_lost)

    async def close(self) -> None:
        self.connection.close_callbacks.discard(self._on_connection_lost)
        self._fail_all(RpcConnectionLost("the RPC client was closed"))
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._tag), timeout=5)
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()
        self._channel = self._queue = self._tag = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def call(self, command: Contract, *, deadline: float, request_id: str | None = None) -> Contract:
        """Send ``command`` and return its reply (possibly ``CommandFailed``) within ``deadline`` seconds.

        Raises ``RpcTimeout`` (no reply in time, or the publish was not confirmed), ``RpcConnectionLost``
        (no connection, or it dropped while waiting), ``PublishRejected``/``Unroutable`` (the broker refused
        the command), or ``MalformedMessage`` (the reply did not decode). All but the last are retryable.
        """
        if self._channel is None:
            raise RuntimeError("RpcClient.start() was not called")
        started = time.monotonic()
        command_id = new_message_id()
        future: asyncio.Future[Contract] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        try:
            try:
                await self.publisher.send_command(
                    command,
                    reply_to=self.queue_name,
                    message_id=command_id,
                    correlation_id=command_id,
                    request_id=request_id,
                    deadline=min(self.publisher.deadline, deadline),
                )
            except BrokerUnavailable as exc:
                raise RpcConnectionLost(f"{command.message_type} not sent: {exc}") from None
            except PublishTimeout as exc:
                raise RpcTimeout(f"{command.message_type} not confirmed in time: {exc}") from None
            remaining = max(0.0, deadline - (time.monotonic() - started))
            try:
                async with asyncio.timeout(remaining):
                    return await future
            except TimeoutError:
                raise RpcTimeout(
                    f"no reply to {command.message_type} (command {command_id}) within {deadline:g}s"
                ) from None
        finally:
            self._pending.pop(command_id, None)

    async def _on_reply(self, incoming: AbstractIncomingMessage) -> None:
        try:
            correlation_id = incoming.correlation_id
            future = self._pending.get(correlation_id or "")
            if future is None or future.done():
                await self._unmatched(incoming)
                return
            try:
                reply = decode_message(incoming, self._replies)
            except MalformedMessage as exc:
                log.warning("malformed RPC reply", reason=exc.reason, detail=exc.detail)
                future.set_exception(exc)
                return
            future.set_result(reply)
        finally:
            with contextlib.suppress(Exception):
                await incoming.ack()

    async def _unmatched(self, incoming: AbstractIncomingMessage) -> None:
        """A reply nobody waits for (its call timed out, or another replica's): hand it on or drop it."""
        if self._on_unmatched is not None:
            try:
                await self._on_unmatched(decode_message(incoming, self._replies))
                return
            except Exception as exc:  # the hook's trouble must not stop this consumer
                log.warning(
                    "late RPC reply not applied",
                    correlation_id=incoming.correlation_id,
                    message_type=incoming.type,
                    error=type(exc).__name__,
                )
                return
        log.info(
            "late or unknown RPC reply dropped",
            correlation_id=incoming.correlation_id,
            message_type=incoming.type,
        )

    def _on_connection_lost(self, *_: Any) -> None:
        self._fail_all(RpcConnectionLost("the broker connection was lost while waiting for the reply"))

    def _fail_all(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
