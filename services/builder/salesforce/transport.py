"""One place where the Builder talks HTTP to Salesforce: timeouts, metrics, network errors as typed errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from builder.metrics import Metrics
from builder.salesforce.errors import ResponseTooLarge, SalesforceUnavailable
from shared.logging import get_logger

log = get_logger(__name__)
MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Response:
    """A fully read response."""

    status: int
    text: str
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Transport:
    """An aiohttp session with a deadline on every call; never logs bodies, headers or query strings."""

    session: aiohttp.ClientSession
    timeout: float
    metrics: Metrics | None = None
    max_body_bytes: int = MAX_BODY_BYTES

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        operation: str,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        json: Any = None,
        seconds: float | None = None,
    ) -> Response:
        """Send one request and read its whole body.

        A timeout or a network failure raises SalesforceUnavailable; a body above ``max_body_bytes`` raises
        ResponseTooLarge (never a silently truncated body).
        """
        limit = seconds or self.timeout
        started = time.monotonic()
        outcome = "error"
        target = URL(url) if isinstance(url, str) else url
        try:
            async with asyncio.timeout(limit):
                async with self.session.request(
                    method,
                    target,
                    headers=dict(headers or {}),
                    data=data,
                    json=json,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=limit),
                ) as resp:
                    raw = await self._read_body(resp, operation, target)
                    text = raw.decode(resp.charset or "utf-8", "replace")
                    outcome = str(resp.status)
                    return Response(resp.status, text, dict(resp.headers))
        except TimeoutError:
            outcome = "timeout"
            raise SalesforceUnavailable(
                f"Salesforce {operation} did not answer within {limit:g}s ({target.host})"
            ) from None
        except aiohttp.ClientError as exc:
            outcome = "network"
            raise SalesforceUnavailable(
                f"Salesforce {operation} could not be reached at {target.host} ({type(exc).__name__})"
            ) from None
        finally:
            elapsed = time.monotonic() - started
            if self.metrics is not None:
                self.metrics.salesforce_calls.labels(operation, outcome).inc()
                self.metrics.salesforce_seconds.labels(operation).observe(elapsed)
            log.debug(
                "salesforce call", operation=operation, host=target.host, outcome=outcome, seconds=elapsed
            )

    async def _read_body(self, resp: aiohttp.ClientResponse, operation: str, target: URL) -> bytes:
        """The whole body, chunk by chunk, refused as soon as it grows past the cap."""
        limit = self.max_body_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise ResponseTooLarge(operation, target.host, limit)
        body = bytearray()
        async for chunk in resp.content.iter_any():
            body.extend(chunk)
            if len(body) > limit:
                raise ResponseTooLarge(operation, target.host, limit)
        return bytes(body)
