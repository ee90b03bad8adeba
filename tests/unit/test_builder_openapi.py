"""The OpenAPI document describes exactly the routes the Builder serves."""

from __future__ import annotations

import pytest
from aiohttp import web
from builder.http.openapi import openapi_document
from builder.http.routes import setup_routes

pytestmark = pytest.mark.unit


def test_every_route_is_documented_and_every_documented_path_is_served() -> None:
    app = web.Application()
    setup_routes(app)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    doc = openapi_document()
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert documented == served - {("get", "/v1/openapi.json")}
    assert doc["openapi"].startswith("3.1")


def test_protected_operations_declare_the_admin_key() -> None:
    doc = openapi_document()
    for path, item in doc["paths"].items():
        for operation in item.values():
            protected = path.startswith("/v1/") and path != "/v1/salesforce/callback"
            assert bool(operation.get("security")) == protected, path
            if protected:
                assert "401" in operation["responses"], path
