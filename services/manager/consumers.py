"""The replies consumer's handlers: each Builder reply → ``ConnectionService.record_reply``.

Errors follow the consumer wrapper's rules (shared.amqp.consumer): an unknown connection raises
``ConnectionNotFound`` (permanent, no failure reply) so the reply is dead-lettered; an unreachable
database raises ``StoreUnavailable`` (retryable) so the reply is retried later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from manager.services import ConnectionService
from shared.contracts import REPLIES, Contract

ReplyHandler = Callable[[Any, Any], Awaitable[Contract | None]]


def reply_handlers(service: ConnectionService) -> Mapping[type[Contract], ReplyHandler]:
    """One handler per reply contract, for ``shared.amqp.Consumer``."""

    async def handle(reply: Contract, _delivery: Any) -> None:
        await service.record_reply(reply)
        return None

    return {model: handle for model in REPLIES}
