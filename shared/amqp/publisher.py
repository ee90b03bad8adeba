"""Confirmed, mandatory publishing with a deadline on every publish.

Outcomes: the broker's ack returns normally; a nack raises ``PublishRejected``; a returned (unroutable)
message or a missing exchange raises ``Unroutable``; no confirm within the deadline raises
``PublishTimeout`` (e.g. a memory alarm blocking publishers); no live connection raises
``BrokerUnavailable`` at once (aio-pika does not replay publishes made during an outage; the caller
retries, and consumers are idempotent). All are ``RetryableError`` subclasses.
"""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq.abc
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractRobustChannel, AbstractRobustConnection

from shared.amqp.errors import BrokerUnavailable, PublishRejected, PublishTimeout, Unroutable
from shared.amqp.message import command_message, reply_message
from shared.amqp.topology import Topology
from shared.contracts import Contract
from shared.logging import get_logger

log = get_logger(__name__)

_OUTAGE = (
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
)


class Publisher:
    """Publishes contracts on its own confirm channel; one per process is enough."""

    def __init__(
        self, connection: AbstractRobustConnection, topology: Topology, *, app_id: str, deadline: float = 5.0
    ) -> None:
        self.connection = connection
        self.topology = topology
        self.app_id = app_id
        self.deadline = deadline
        self._channel: AbstractChannel | None = None

    async def start(self) -> None:
        """Open the confirm channel (``on_return_raises`` so an unroutable message raises)."""
        async with asyncio.timeout(self.deadline):
            self._channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None

    async def publish(
        self, message: aio_pika.Message, *, exchange: str, routing_key: str, deadline: float | None = None
    ) -> None:
        """Publish ``message`` (mandatory) and wait for the broker's confirm within the deadline."""
        if self._channel is None:
            raise RuntimeError("Publisher.start() was not called")
        if not self.connection.connected.is_set() or self.connection.is_closed:
            raise BrokerUnavailable("no connection to the broker: the message was not sent")
        limit = self.deadline if deadline is None else deadline
        where = f"exchange {exchange or '(default)'!r} with routing key {routing_key!r}"
        try:
            async with asyncio.timeout(limit):
                underlay = await self._underlay()
                await underlay.basic_publish(
                    message.body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=message.properties,
                    mandatory=True,
                )
        except TimeoutError:
            raise PublishTimeout(f"no broker confirm within {limit:g}s for a publish to {where}") from None
        except aiormq.exceptions.PublishError as exc:
            reply = getattr(exc.frame, "reply_text", "NO_ROUTE")
            raise Unroutable(f"the broker returned a message sent to {where} ({reply})") from None
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise Unroutable(f"{where}: the exchange does not exist") from None
        except aiormq.exceptions.DeliveryError:
            raise PublishRejected(f"the broker refused (nack) a message sent to {where}") from None
        except _OUTAGE as exc:
            raise BrokerUnavailable(
                f"the broker connection failed during a publish to {where} ({type(exc).__name__})"
            ) from None

    async def _underlay(self) -> aiormq.abc.AbstractChannel:
        """The live channel; after a channel-level close (e.g. a missing exchange) wait for its reopening."""
        assert self._channel is not None
        while True:
            if not self.connection.connected.is_set() or self.connection.is_closed:
                raise BrokerUnavailable("no connection to the broker: the message was not sent")
            try:
                if isinstance(self._channel, AbstractRobustChannel):
                    await self._channel.ready()
                underlay = await self._channel.get_underlay_channel()
                if not underlay.is_closed:
                    return underlay
            except aiormq.exceptions.ChannelInvalidStateError:
                pass
            await asyncio.sleep(0.05)  # the robust channel is reopening; the caller's deadline bounds this

    async def send_command(
        self,
        command: Contract,
        *,
        reply_to: str,
        correlation_id: str | None = None,
        request_id: str | None = None,
        message_id: str | None = None,
        deadline: float | None = None,
    ) -> str:
        """Publish a command to the commands exchange; returns its ``message_id`` (= ``correlation_id`` by default)."""
        message = command_message(
            command,
            app_id=self.app_id,
            reply_to=reply_to,
            correlation_id=correlation_id,
            request_id=request_id,
            message_id=message_id,
        )
        mid = str(message.message_id)
        await self.publish(
            message,
            exchange=self.topology.commands_exchange,
            routing_key=command.routing_key,
            deadline=deadline,
        )
        log.debug("command published", message_type=command.message_type, command_id=mid)
        return mid

    async def send_reply(
        self,
        reply: Contract,
        *,
        reply_to: str,
        correlation_id: str | None,
        request_id: str | None = None,
        deadline: float | None = None,
    ) -> str:
        """Publish a reply to the queue named by ``reply_to`` (default exchange); returns its ``message_id``."""
        message = reply_message(
            reply, app_id=self.app_id, correlation_id=correlation_id, request_id=request_id
        )
        await self.publish(message, exchange="", routing_key=reply_to, deadline=deadline)
        return str(message.message_id)
