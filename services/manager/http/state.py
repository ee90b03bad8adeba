"""Typed application and request state shared by the views and the middlewares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from manager.apikeys import ApiKey, Authenticator
from manager.idempotency import IdempotencyRepository
from manager.metrics import Metrics
from manager.services import ConnectionService
from manager.tokens import TokenService

Check = Callable[[], Awaitable[bool]]


@dataclass
class Components:
    """What the HTTP layer needs, built by the composition root (app.py)."""

    connections: ConnectionService
    tokens: TokenService
    authenticator: Authenticator
    idempotency: IdempotencyRepository
    metrics: Metrics
    checks: dict[str, Check] = field(default_factory=dict)


COMPONENTS = web.AppKey("manager.components", Components)
METRICS = web.AppKey("manager.metrics", Metrics)
PRINCIPAL = web.RequestKey("manager.principal", ApiKey)
REQUEST_ID = web.RequestKey("manager.request_id", str)
