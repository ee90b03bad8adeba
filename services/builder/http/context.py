"""What the HTTP views need, held in one typed app key (filled by the composition root)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from builder.metrics import Metrics
from builder.ports import SalesforcePort
from builder.salesforce.oauth import OAuthClient
from builder.salesforce.rest import RestApi
from builder.settings import BuilderSettings
from builder.store import Store
from shared.contracts import utcnow


@dataclass
class HttpContext:
    """The Builder's resources as the views see them; resources are set once the app has started."""

    settings: BuilderSettings
    metrics: Metrics
    clock: Callable[[], datetime] = utcnow
    store: Store | None = None
    oauth: OAuthClient | None = None
    salesforce: SalesforcePort | None = None
    rest: RestApi | None = None
    # Readiness checks by name (database, broker); each raises when its dependency does not answer.
    readiness: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)

    def require_store(self) -> Store:
        if self.store is None:
            raise web.HTTPServiceUnavailable(text="the Builder is starting")
        return self.store

    def require_oauth(self) -> OAuthClient:
        if self.oauth is None:
            raise web.HTTPServiceUnavailable(text="the Builder is starting")
        return self.oauth

    def require_salesforce(self) -> SalesforcePort:
        if self.salesforce is None:
            raise web.HTTPServiceUnavailable(text="the Builder is starting")
        return self.salesforce


CONTEXT = web.AppKey("builder_context", HttpContext)
