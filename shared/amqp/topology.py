"""Exchange and queue names of DESIGN §3 and their idempotent declaration.

Every name is prefixed by ``prefix`` (empty in production; tests isolate themselves with it). Queues are
declared with identical arguments everywhere (a redeclaration with other arguments closes the channel with
``PRECONDITION_FAILED``), so both services may declare the shared part whatever order they start in.

Delayed retry: for each delay tier ``N`` there is a fanout exchange and a quorum queue, both named
``sfconnect.retry.N``; the queue has ``x-message-ttl = N s`` and dead-letters to the commands exchange
keeping the message's own routing key (no ``x-dead-letter-routing-key``). The consumer republishes a
message to the tier exchange with the routing key = the name of the queue it came from, and every queue
that may retry (``builder.commands``, ``manager.replies``) is bound to the commands exchange under its
own name, so a retried message returns to exactly the queue that failed it. (Publishing to a retry queue
through the default exchange would bring it back with the retry queue's name as routing key, which
nothing is bound to: the broker would drop it silently; see rabbitmq-notes.md.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel

from shared.contracts import COMMANDS

COMMAND_ROUTING_KEYS: tuple[str, ...] = tuple(c.routing_key for c in COMMANDS)


@dataclass(frozen=True)
class QueueSpec:
    """How a queue is declared: the same everywhere."""

    name: str
    arguments: dict[str, Any]
    durable: bool = True


@dataclass(frozen=True)
class Topology:
    """Names and declaration of the broker objects both services use."""

    prefix: str = ""
    delivery_limit: int = 5
    retry_delays: tuple[int, ...] = (1, 5, 30, 120)
    rpc_expires_ms: int = 300_000

    def __post_init__(self) -> None:
        if not self.retry_delays or any(d <= 0 for d in self.retry_delays):
            raise ValueError("retry_delays must be positive whole seconds")
        object.__setattr__(self, "retry_delays", tuple(sorted(set(self.retry_delays))))
        if self.delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")

    @property
    def commands_exchange(self) -> str:
        return f"{self.prefix}sfconnect.commands"

    @property
    def builder_queue(self) -> str:
        return f"{self.prefix}builder.commands"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}sfconnect.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}sfconnect.dead-letters"

    @property
    def replies_queue(self) -> str:
        return f"{self.prefix}manager.replies"

    def rpc_queue(self, instance_id: str) -> str:
        """The per-replica reply queue for synchronous waits."""
        return f"{self.prefix}manager.rpc.{instance_id}"

    def retry_queue(self, seconds: int | str) -> str:
        """The delay-tier queue (and its fanout exchange, of the same name); a str makes a name template."""
        return f"{self.prefix}sfconnect.retry.{seconds}"

    def retry_exchange(self, seconds: int) -> str:
        return self.retry_queue(seconds)

    def retry_tier(self, retry_after: float | None) -> int:
        """The smallest delay tier >= ``retry_after`` (the largest tier when none is big enough)."""
        wanted = retry_after or 0
        for delay in self.retry_delays:
            if delay >= wanted:
                return delay
        return self.retry_delays[-1]

    # -- queue arguments (one place) -------------------------------------------------------------
    def _work_queue(self, name: str) -> QueueSpec:
        return QueueSpec(
            name,
            {
                "x-queue-type": "quorum",
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dead_exchange,
            },
        )

    def queue_spec(self, name: str) -> QueueSpec:
        """The declaration of a queue this topology knows (KeyError for any other name)."""
        if name in (self.builder_queue, self.replies_queue):
            return self._work_queue(name)
        if name == self.dead_queue:
            return QueueSpec(name, {"x-queue-type": "quorum"})
        for delay in self.retry_delays:
            if name == self.retry_queue(delay):
                return QueueSpec(
                    name,
                    {
                        "x-queue-type": "quorum",
                        "x-message-ttl": delay * 1000,
                        "x-dead-letter-exchange": self.commands_exchange,
                    },
                )
        rpc_prefix = self.rpc_queue("")
        if name.startswith(rpc_prefix) and len(name) > len(rpc_prefix):
            return QueueSpec(name, {"x-queue-type": "classic", "x-expires": self.rpc_expires_ms})
        raise KeyError(name)

    # -- declaration -----------------------------------------------------------------------------
    async def declare_queue(self, channel: AbstractChannel, name: str) -> Any:
        """Declare one known queue with its canonical arguments; returns the aio-pika queue."""
        spec = self.queue_spec(name)
        return await channel.declare_queue(spec.name, durable=spec.durable, arguments=spec.arguments)

    async def _declare_shared(self, channel: AbstractChannel) -> None:
        commands = await channel.declare_exchange(self.commands_exchange, ExchangeType.DIRECT, durable=True)
        dead = await channel.declare_exchange(self.dead_exchange, ExchangeType.FANOUT, durable=True)
        dead_queue = await self.declare_queue(channel, self.dead_queue)
        await dead_queue.bind(dead, routing_key="")
        builder = await self.declare_queue(channel, self.builder_queue)
        for key in (*COMMAND_ROUTING_KEYS, self.builder_queue):
            await builder.bind(commands, routing_key=key)
        replies = await self.declare_queue(channel, self.replies_queue)
        await replies.bind(commands, routing_key=self.replies_queue)
        for delay in self.retry_delays:
            exchange = await channel.declare_exchange(
                self.retry_exchange(delay), ExchangeType.FANOUT, durable=True
            )
            queue = await self.declare_queue(channel, self.retry_queue(delay))
            await queue.bind(exchange, routing_key="")

    async def declare_builder(self, channel: AbstractChannel) -> None:
        """Everything the Builder consumes from or publishes to (idempotent)."""
        await self._declare_shared(channel)

    async def declare_manager(self, channel: AbstractChannel, instance_id: str) -> None:
        """Everything the Manager uses, including this replica's RPC reply queue (idempotent)."""
        await self._declare_shared(channel)
        await self.declare_queue(channel, self.rpc_queue(instance_id))

    def queue_names(self, instance_ids: Iterable[str] = ()) -> list[str]:
        return [
            self.builder_queue,
            self.replies_queue,
            self.dead_queue,
            *(self.retry_queue(d) for d in self.retry_delays),
            *(self.rpc_queue(i) for i in instance_ids),
        ]

    def exchange_names(self) -> list[str]:
        return [
            self.commands_exchange,
            self.dead_exchange,
            *(self.retry_exchange(d) for d in self.retry_delays),
        ]

    async def delete_all(self, channel: AbstractChannel, instance_ids: Iterable[str] = ()) -> None:
        """Delete every queue and exchange of this topology (test clean-up; missing ones are fine)."""
        if not self.prefix:
            raise ValueError("delete_all refuses to run on the unprefixed production topology")
        for queue in self.queue_names(instance_ids):
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
        for exchange in self.exchange_names():
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)
