"""The ports the use cases talk through (Protocols), and the clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from shared.contracts import Contract

Clock = Callable[[], datetime]


def utc_now_ms() -> datetime:
    """Now, in UTC, truncated to milliseconds (what BSON dates keep)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class CommandPublisher(Protocol):
    """Confirmed publishing of commands (shared.amqp.Publisher)."""

    async def send_command(
        self,
        command: Contract,
        *,
        reply_to: str,
        correlation_id: str | None = None,
        request_id: str | None = None,
        message_id: str | None = None,
    ) -> str: ...


class RpcCaller(Protocol):
    """Request/reply with a deadline (shared.amqp.RpcClient)."""

    async def call(
        self, command: Contract, *, deadline: float, request_id: str | None = None
    ) -> Contract: ...
