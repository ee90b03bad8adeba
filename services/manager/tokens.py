"""Serving tokens to generated code, refreshing them through the Builder, coalescing refreshes.

Within a replica, concurrent refreshes of one connection share one in-flight task. Across replicas, a
lease on the connection document (compare-and-set) lets exactly one replica send the RPC; the others
poll the document for the new token until their deadline, or until the holder records the Builder's
refusal (``last_refresh_error``), which they then answer with too instead of sending their own RPC. A
forced refresh shortly after a refresh returns that refresh's token (``min_refresh_interval``): the
caller's 401 was about an older token.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from manager.domain import ACCESS_TOKEN_FIELD, Connection, ConnectionStatus, ErrorInfo
from manager.errors import (
    BuilderUnavailable,
    ConnectionNotActive,
    TokenRefreshFailed,
)
from manager.ports import Clock, RpcCaller, utc_now_ms
from manager.repository import update_with_cas
from manager.services import ConnectionService
from shared.contracts import RETRYABLE_CODES, CommandFailed, ConnectionTokenRefreshed, RefreshConnectionToken
from shared.crypto import DecryptionError
from shared.errors import RetryableError
from shared.logging import get_logger
from shared.sealing import SealingError

log = get_logger("manager.tokens")


@dataclass(frozen=True)
class TokenView:
    """What the token endpoints return."""

    access_token: str
    instance_url: str
    issued_at: datetime
    token_type: str = "Bearer"


class TokenService:
    """Reads and refreshes access tokens."""

    def __init__(
        self,
        *,
        connections: ConnectionService,
        rpc: RpcCaller,
        instance_id: str,
        token_lifetime: timedelta,
        rpc_deadline: float,
        min_refresh_interval: timedelta,
        poll_interval: float = 0.05,
        clock: Clock = utc_now_ms,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.connections = connections
        self.repo = connections.repo
        self.rpc = rpc
        self.instance_id = instance_id
        self.token_lifetime = token_lifetime
        self.rpc_deadline = rpc_deadline
        self.min_refresh_interval = min_refresh_interval
        self.poll_interval = poll_interval
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self._inflight: dict[str, asyncio.Task[Connection]] = {}

    async def for_integration(
        self, name: str, *, force_refresh: bool = False, request_id: str | None = None
    ) -> TokenView:
        """The token of the connection the integration is bound to."""
        integration = await self.connections.integration(name)
        return await self.for_connection(
            integration.connection_id, force_refresh=force_refresh, request_id=request_id
        )

    async def for_connection(
        self, connection_id: str, *, force_refresh: bool = False, request_id: str | None = None
    ) -> TokenView:
        """The decrypted token, refreshed first when forced or older than the configured lifetime."""
        conn = self._require_active(await self.connections.get(connection_id))
        now = self.clock()
        stale = conn.token_is_stale(now=now, lifetime=self.token_lifetime)
        forced = force_refresh and not conn.refreshed_within(now=now, window=self.min_refresh_interval)
        refreshed = stale or forced
        if refreshed:
            conn = await self._coalesced(conn, request_id)
        self.connections.metrics.token_reads.labels(str(refreshed).lower()).inc()
        return self._view(conn)

    def _require_active(self, conn: Connection) -> Connection:
        if conn.status is not ConnectionStatus.ACTIVE or conn.token is None:
            raise ConnectionNotActive(f"connection {conn.id} is {conn.status}; it has no token to give")
        return conn

    def _view(self, conn: Connection) -> TokenView:
        assert conn.token is not None and conn.instance_url is not None
        try:
            plaintext = self.connections.keyring.decrypt(
                conn.token.ciphertext, record_id=conn.id, field=ACCESS_TOKEN_FIELD
            )
        except DecryptionError as exc:  # e.g. stored under a key this replica does not hold (yet)
            log.error("stored token cannot be decrypted", connection_id=conn.id, error=str(exc))
            raise
        return TokenView(
            access_token=plaintext, instance_url=conn.instance_url, issued_at=conn.token.issued_at
        )

    async def _coalesced(self, conn: Connection, request_id: str | None) -> Connection:
        task = self._inflight.get(conn.id)
        if task is None:
            task = asyncio.create_task(
                self._refresh(conn.id, conn.token_generation, conn.last_refresh_error, request_id)
            )
            self._inflight[conn.id] = task
            task.add_done_callback(lambda t, cid=conn.id: self._forget(cid, t))  # type: ignore[misc]
        else:
            self.connections.metrics.refreshes.labels("coalesced").inc()
        # shield: a caller that goes away must not cancel the refresh the others are waiting for
        return await asyncio.shield(task)

    def _forget(self, connection_id: str, task: asyncio.Task[Connection]) -> None:
        if self._inflight.get(connection_id) is task:
            del self._inflight[connection_id]
        if not task.cancelled():
            task.exception()  # retrieved here so an error nobody awaited is not reported as lost

    async def _refresh(
        self, connection_id: str, baseline: int, seen_error: ErrorInfo | None, request_id: str | None
    ) -> Connection:
        """Refresh once across replicas: take the lease and call the Builder, or wait for who has it.

        ``baseline`` and ``seen_error`` are what the caller read: a newer token generation is another
        replica's success, a different ``last_refresh_error`` its recorded refusal (answered the same way).
        """
        deadline = self.monotonic() + self.rpc_deadline
        while True:
            conn = self._require_active(await self.connections.get(connection_id))
            if self._settled_elsewhere(conn, baseline, seen_error):
                self.connections.metrics.refreshes.labels("coalesced").inc()
                return conn  # another replica refreshed it
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                self.connections.metrics.refreshes.labels("failed").inc()
                raise BuilderUnavailable(
                    f"no new token for connection {connection_id} within {self.rpc_deadline:g}s",
                    retry_after=5,
                )
            now = self.clock()
            lease_until = now + timedelta(seconds=remaining + 5)
            if await self.repo.acquire_refresh_lease(
                connection_id, holder=self.instance_id, until=lease_until, now=now
            ):
                try:
                    return await self._refresh_with_builder(
                        connection_id, baseline, seen_error, remaining, request_id
                    )
                finally:
                    with contextlib.suppress(Exception):  # an expiring lease is the fallback
                        await self.repo.release_refresh_lease(connection_id, holder=self.instance_id)
            await self.sleep(self.poll_interval)

    async def _record_refresh_failure(
        self, connection_id: str, baseline: int, code: str, message: str
    ) -> None:
        """Keep the Builder's refusal on the connection (shown by GET); never masks the caller's error."""
        now = self.clock()

        def change(conn: Connection) -> Connection | None:
            if conn.status is not ConnectionStatus.ACTIVE or conn.token_generation > baseline:
                return None  # deleted, or refreshed by someone else meanwhile: nothing to report
            return conn.refresh_failed(code=code, message=message, now=now)

        try:
            await update_with_cas(self.repo, connection_id, change)
        except Exception as exc:  # best effort: the 502/503 to the caller matters more
            log.warning(
                "could not record the refresh failure", connection_id=connection_id, error=type(exc).__name__
            )
        log.warning("token refresh refused by the Builder", connection_id=connection_id, code=code)

    def _settled_elsewhere(self, conn: Connection, baseline: int, seen_error: ErrorInfo | None) -> bool:
        """True when another refresh stored a token since the caller's read; raises the refusal when
        another refresh was refused since then (its waiters answer with it instead of asking again)."""
        if conn.token_generation > baseline:
            return True
        failure = conn.last_refresh_error
        if failure is not None and failure != seen_error:
            self.connections.metrics.refreshes.labels("coalesced").inc()
            raise _refusal(failure.code, failure.message, retryable=False)
        return False

    async def _refresh_with_builder(
        self,
        connection_id: str,
        baseline: int,
        seen_error: ErrorInfo | None,
        deadline: float,
        request_id: str | None,
    ) -> Connection:
        current = self._require_active(await self.connections.get(connection_id))
        if self._settled_elsewhere(current, baseline, seen_error):
            return current  # refreshed between our read and our lease
        command = RefreshConnectionToken(
            connection_id=connection_id, recipient_key_id=self.connections.opener.active_kid
        )
        metrics = self.connections.metrics
        try:
            reply = await self.rpc.call(command, deadline=deadline, request_id=request_id)
        except Exception as exc:  # RpcTimeout, RpcConnectionLost, PublishTimeout, broker down ...
            metrics.refreshes.labels("failed").inc()
            log.warning(
                "token refresh failed", connection_id=connection_id, error=f"{type(exc).__name__}: {exc}"
            )
            retry_after = exc.retry_after if isinstance(exc, RetryableError) and exc.retry_after else 5
            raise BuilderUnavailable(
                f"the Builder did not refresh the token of connection {connection_id} in time",
                retry_after=retry_after,
            ) from None
        metrics.refreshes.labels("sent").inc()
        if isinstance(reply, CommandFailed):
            metrics.refreshes.labels("failed").inc()
            cause = reply.error.code.value
            await self._record_refresh_failure(connection_id, baseline, cause, reply.error.message)
            raise _refusal(cause, reply.error.message, retryable=reply.error.retryable)
        if not isinstance(reply, ConnectionTokenRefreshed) or reply.connection_id != connection_id:
            raise TokenRefreshFailed(f"the Builder answered a refresh with {reply.message_type}")
        refreshed = reply
        try:
            token = self.connections.open_token(connection_id, refreshed)
        except SealingError as exc:
            raise TokenRefreshFailed(str(exc), cause=exc.code) from None
        now = self.clock()

        def change(conn: Connection) -> Connection | None:
            if conn.status is not ConnectionStatus.ACTIVE:
                raise ConnectionNotActive(f"connection {conn.id} became {conn.status} during the refresh")
            if conn.token is not None and token.issued_at < conn.token.issued_at:
                return None  # a newer token arrived meanwhile; keep it
            return conn.with_token(token=token, instance_url=str(refreshed.instance_url).rstrip("/"), now=now)

        conn, _ = await update_with_cas(self.repo, connection_id, change)
        log.info("token refreshed", connection_id=connection_id)
        return conn


def _refusal(code: str, message: str, *, retryable: bool) -> BuilderUnavailable | TokenRefreshFailed:
    """The error a Builder's refusal of a refresh becomes (for the replica that asked and its waiters)."""
    text = f"the Builder could not refresh the token ({code}): {message}"
    if retryable or code in {c.value for c in RETRYABLE_CODES}:
        return BuilderUnavailable(text, retry_after=30, cause=code)
    return TokenRefreshFailed(text, cause=code)
