"""The replies consumer's handlers: each Builder reply → ``ConnectionService.record_reply``; and the
RPC client's hook for refresh replies that arrive after their call gave up.

Errors follow the consumer wrapper's rules (shared.amqp.consumer): an unknown connection raises
``ConnectionNotFound`` (permanent, no failure reply) so the reply is dead-lettered; an unreachable
database raises ``StoreUnavailable`` (retryable) so the reply is retried later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from manager.services import ConnectionService
from shared.contracts import REPLIES, ConnectionTokenRefreshed, Contract
from shared.logging import get_logger

log = get_logger("manager.consumers")

ReplyHandler = Callable[[Any, Any], Awaitable[Contract | None]]


def reply_handlers(service: ConnectionService) -> Mapping[type[Contract], ReplyHandler]:
    """One handler per reply contract, for ``shared.amqp.Consumer``."""

    async def handle(reply: Contract, _delivery: Any) -> None:
        await service.record_reply(reply)
        return None

    return {model: handle for model in REPLIES}


def late_reply_handler(service: ConnectionService) -> Callable[[Contract], Awaitable[None]]:
    """``RpcClient``'s ``on_unmatched``: store a token the Builder minted for a call that timed out.

    ``record_reply`` keeps it only when it is newer than the stored one; any other late reply (a late
    refusal) has nobody left to tell. Errors are logged by the RPC client and the reply is acked.
    """

    async def keep(reply: Contract) -> None:
        if isinstance(reply, ConnectionTokenRefreshed):
            await service.record_reply(reply)
        else:
            log.info("late RPC reply not kept", type=reply.message_type)

    return keep
