"""The whole URL table in one place: path, handler, required scope and what the OpenAPI document says."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from manager.apikeys import Scope
from manager.http import views
from manager.http.schemas import (
    AssociateIntegrationRequest,
    ConnectionOut,
    ConnectionPage,
    CreateConnectionRequest,
    Health,
    IntegrationOut,
    ListConnectionsQuery,
    TokenOut,
    TokenQuery,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One operation of the API."""

    method: str
    path: str
    handler: Handler
    name: str
    summary: str
    scope: Scope | None
    tag: str
    status: int = 200
    response: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    media_type: str = "application/json"


_CID = "/v1/connections/{connection_id}"
_INT = "/v1/integrations/{name}"

ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/connections", views.create_connection, "createConnection",
          "Create a connection (pending until the Builder answers)", Scope.CONNECTIONS_WRITE, "connections",
          status=202, response=ConnectionOut, body=CreateConnectionRequest, errors=(400, 409, 413, 415, 422, 503)),
    Route("GET", "/v1/connections", views.list_connections, "listConnections",
          "List connections, one page at a time", Scope.CONNECTIONS_READ, "connections",
          response=ConnectionPage, query=ListConnectionsQuery, errors=(400, 422, 503)),
    Route("GET", _CID, views.get_connection, "getConnection",
          "Get a connection (never a secret)", Scope.CONNECTIONS_READ, "connections",
          response=ConnectionOut, errors=(400, 404, 503)),
    Route("DELETE", _CID, views.delete_connection, "deleteConnection",
          "Delete a connection (its app is removed from the org)", Scope.CONNECTIONS_WRITE, "connections",
          status=202, response=ConnectionOut, errors=(400, 404, 409, 503)),
    Route("GET", f"{_CID}/token", views.connection_token, "getConnectionToken",
          "The connection's access token for generated code", Scope.TOKENS_READ, "tokens",
          response=TokenOut, query=TokenQuery, errors=(400, 404, 409, 422, 500, 502, 503)),
    Route("PUT", f"{_INT}/connection", views.associate_integration, "associateIntegration",
          "Bind an integration to a connection", Scope.CONNECTIONS_WRITE, "integrations",
          response=IntegrationOut, body=AssociateIntegrationRequest, errors=(400, 404, 409, 413, 415, 422, 503)),
    Route("GET", f"{_INT}/token", views.integration_token, "getIntegrationToken",
          "The access token of the integration's connection", Scope.TOKENS_READ, "tokens",
          response=TokenOut, query=TokenQuery, errors=(400, 404, 409, 422, 500, 502, 503)),
    Route("GET", "/healthz", views.healthz, "healthz", "Liveness", None, "operations", response=Health),
    Route("GET", "/readyz", views.readyz, "readyz", "Readiness: broker and database answer", None,
          "operations", response=Health, errors=(503,)),
    Route("GET", "/metrics", views.metrics, "metrics", "Prometheus metrics", None, "operations",
          media_type="text/plain"),
    Route("GET", "/v1/openapi.json", views.openapi, "openapi", "This document", None, "operations"),
)  # fmt: skip

ROUTE_BY_NAME: dict[str, Route] = {r.name: r for r in ROUTES}


def setup_routes(app: web.Application) -> None:
    """Register every route of :data:`ROUTES`."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, name=route.name)
