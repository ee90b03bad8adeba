"""The OpenAPI 3.1 document of the Builder's HTTP API, served at /v1/openapi.json."""

from __future__ import annotations

from typing import Any

PROBLEM = {"$ref": "#/components/responses/Problem"}
ORG_ID = {
    "name": "org_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$"},
}
SECURED: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
CHECKS = {
    "type": "object",
    "description": "Readiness: each dependency (database, broker), up or down",
    "additionalProperties": {"enum": ["up", "down"]},
}
AUTHORIZE_QUERY = [
    {"name": "login_url", "in": "query", "schema": {"type": "string", "format": "uri"}},
    {"name": "sandbox", "in": "query", "schema": {"type": "boolean"}},
]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    """Build the document (a plain dict; it is small and changes with the routes in routes.py)."""
    org = {
        "type": "object",
        "required": ["org_id", "instance_url", "status"],
        "properties": {
            "org_id": {"type": "string"},
            "user_id": {"type": "string"},
            "instance_url": {"type": "string", "format": "uri"},
            "login_url": {"type": "string", "format": "uri"},
            "is_sandbox": {"type": "boolean"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "string", "enum": ["ok", "needs_reauth"]},
            "status_reason": {"type": "string"},
            "app_kind_support": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "authorized_at": {"type": ["string", "null"], "format": "date-time"},
            "updated_at": {"type": ["string", "null"], "format": "date-time"},
        },
    }
    sobject = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "label": {"type": "string"},
            "labelPlural": {"type": "string"},
            "keyPrefix": {"type": ["string", "null"]},
            "custom": {"type": "boolean"},
            "queryable": {"type": "boolean"},
            "createable": {"type": "boolean"},
            "updateable": {"type": "boolean"},
            "deletable": {"type": "boolean"},
            "retrieveable": {"type": "boolean"},
            "searchable": {"type": "boolean"},
            "triggerable": {"type": "boolean"},
        },
    }
    html_page = {
        "description": "A plain HTML page for the admin",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sfconnect Builder",
            "version": "1.0.0",
            "description": "Authorizes the Builder in Salesforce orgs and lists their objects. Everything under "
            "/v1 except the OAuth callback and this document needs the admin API key.",
        },
        "paths": {
            "/v1/salesforce/authorize": {
                "get": {
                    "summary": "Start authorizing the Builder in an org: redirect to Salesforce (for scripts)",
                    "description": "OAuth web server flow with PKCE: stores a single-use state and answers "
                    "302 to the login host's authorize page. A browser cannot send the admin key; an admin "
                    "uses POST and opens the URL it returns.",
                    "security": SECURED,
                    "parameters": AUTHORIZE_QUERY,
                    "responses": {
                        "302": {"description": "Redirect to the Salesforce authorize page"},
                        "400": PROBLEM,
                        "401": PROBLEM,
                        "503": PROBLEM,
                    },
                },
                "post": {
                    "summary": "Start authorizing the Builder in an org: the Salesforce URL to open",
                    "description": "Stores a single-use state and returns the login host's authorize URL "
                    "(with the state and an S256 PKCE challenge) for an admin to open in a browser before "
                    "expires_at; Salesforce then redirects the browser to the callback.",
                    "security": SECURED,
                    "parameters": AUTHORIZE_QUERY,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["authorize_url", "expires_at"],
                                "properties": {
                                    "authorize_url": {"type": "string", "format": "uri"},
                                    "expires_at": {"type": "string", "format": "date-time"},
                                },
                            },
                            "Open authorize_url in a browser and sign in to the org",
                        ),
                        "400": PROBLEM,
                        "401": PROBLEM,
                        "503": PROBLEM,
                    },
                },
            },
            "/v1/salesforce/callback": {
                "get": {
                    "summary": "OAuth redirect target: exchanges the code and stores the authorization",
                    "parameters": [
                        {"name": n, "in": "query", "schema": {"type": "string"}}
                        for n in ("code", "state", "error", "error_description")
                    ],
                    "responses": {"200": html_page, "400": html_page, "503": html_page},
                }
            },
            "/v1/orgs": {
                "get": {
                    "summary": "List the orgs the Builder is authorized in (no secrets)",
                    "security": SECURED,
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"orgs": {"type": "array", "items": org}}},
                            "Orgs",
                        ),
                        "401": PROBLEM,
                        "503": PROBLEM,
                    },
                }
            },
            "/v1/orgs/{org_id}": {
                "delete": {
                    "summary": "Revoke the Builder's refresh token in the org and forget it",
                    "security": SECURED,
                    "parameters": [ORG_ID],
                    "responses": {
                        "204": {"description": "Removed"},
                        "401": PROBLEM,
                        "404": PROBLEM,
                        "503": PROBLEM,
                    },
                }
            },
            "/v1/orgs/{org_id}/objects": {
                "get": {
                    "summary": "The org's sObjects (describeGlobal, cached; honours If-Modified-Since)",
                    "security": SECURED,
                    "parameters": [
                        ORG_ID,
                        {"name": "refresh", "in": "query", "schema": {"type": "boolean"}},
                        {"name": "If-Modified-Since", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "org_id": {"type": "string"},
                                    "fetched_at": {"type": "string", "format": "date-time"},
                                    "sobjects": {"type": "array", "items": sobject},
                                },
                            },
                            "The objects",
                        ),
                        "304": {"description": "Not modified since If-Modified-Since"},
                        "400": PROBLEM,
                        "401": PROBLEM,
                        "404": PROBLEM,
                        "409": PROBLEM,
                        "503": PROBLEM,
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Alive"}}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness (database and broker); the 503 problem's checks say which is down",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["status", "checks"],
                                "properties": {"status": {"const": "ready"}, "checks": CHECKS},
                            },
                            "Ready",
                        ),
                        "503": PROBLEM,
                    },
                }
            },
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Metrics"}}}
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "responses": {
                "Problem": {
                    "description": "An RFC 9457 problem",
                    "content": {
                        "application/problem+json": {
                            "schema": {
                                "type": "object",
                                "required": ["type", "title", "status", "code"],
                                "properties": {
                                    "type": {"type": "string"},
                                    "title": {"type": "string"},
                                    "status": {"type": "integer"},
                                    "detail": {"type": "string"},
                                    "code": {"type": "string"},
                                    "instance": {"type": "string"},
                                    "checks": CHECKS,
                                },
                            }
                        }
                    },
                }
            },
        },
    }
