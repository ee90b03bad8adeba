"""The whole URL table of the Builder's HTTP API."""

from __future__ import annotations

from aiohttp import web

from builder.http import views
from builder.http.openapi import openapi_document


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document())


def setup_routes(app: web.Application) -> None:
    """Register every route."""
    authorize = app.router.add_resource("/v1/salesforce/authorize", name="authorize")
    authorize.add_route("GET", views.authorize)  # 302, for scripts that follow it
    authorize.add_route("POST", views.authorize_link)  # JSON with the URL, for an admin's browser
    app.router.add_get("/v1/salesforce/callback", views.callback, name="callback")
    app.router.add_get("/v1/orgs", views.list_orgs, name="orgs")
    app.router.add_get("/v1/orgs/{org_id}/objects", views.list_objects, name="org_objects")
    app.router.add_delete("/v1/orgs/{org_id}", views.delete_org, name="org")
    app.router.add_get("/v1/openapi.json", _openapi, name="openapi")
    app.router.add_get("/healthz", views.healthz, name="healthz")
    app.router.add_get("/readyz", views.readyz, name="readyz")
    app.router.add_get("/metrics", views.metrics, name="metrics")
