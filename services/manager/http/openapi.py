"""The OpenAPI 3.1 document, built from the route table and the pydantic schemas (never hand-written)."""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from manager.domain import CONNECTION_ID_PATTERN
from manager.http.routes import ROUTES, Route
from manager.http.schemas import SLUG, Problem
from manager.idempotency import KEY_SHAPE

_REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"{([^}]+)}")
_STATUS_TEXT = {
    200: "OK",
    202: "Accepted",
    400: "Malformed request (bad JSON, bad parameter)",
    401: "Missing or invalid API key",
    403: "The API key lacks the required scope",
    404: "Not found",
    409: "Conflict with the resource's current state",
    413: "Request body too large",
    415: "Request body is not application/json",
    422: "Request does not match its schema, or an Idempotency-Key reused with another body",
    502: "The Builder reported a failure",
    500: "`decryption_failed`: the stored token cannot be decrypted with this replica's ENCRYPTION_KEYS "
    "(a key missing from its list: a configuration error to fix, see docs/errors.md), or `internal_error`",
    503: "A dependency (database, broker, Builder) is unavailable; see Retry-After",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge."}},
    503: {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "Seconds to wait."}},
}
_IN_PROGRESS_HEADERS = {
    "Retry-After": {
        "schema": {"type": "integer", "minimum": 1},
        "description": "Seconds to wait; sent with `idempotency_key_in_progress`.",
    }
}
AUTH_RULE = (
    "Send the API key as `Authorization: Bearer <key>` or as `X-API-Key: <key>`. When both are sent, "
    "the Bearer `Authorization` header wins and `X-API-Key` is ignored. An `Authorization` header with "
    "another scheme (e.g. `Basic`, added by a proxy) is ignored when `X-API-Key` is present; without "
    "`X-API-Key` it is refused with 401."
)
_PATH_PARAMS = {
    "connection_id": {"type": "string", "pattern": CONNECTION_ID_PATTERN, "maxLength": 26},
    "name": {"type": "string", "pattern": SLUG, "maxLength": 63},
}


def _schemas() -> tuple[dict[Any, Any], dict[str, Any]]:
    models: list[tuple[type[BaseModel], Any]] = [(Problem, "serialization")]
    for r in ROUTES:
        models += [(m, "validation") for m in (r.body, r.query) if m is not None]
        if r.response is not None:
            models.append((r.response, "serialization"))
    refs, top = models_json_schema(list(dict.fromkeys(models)), ref_template=_REF)
    return refs, top.get("$defs", {})


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``#/$defs/...`` reference replaced by its schema (a parameter has no $defs)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    schema = _inline({k: v for k, v in schema.items() if k != "$defs"}, schema.get("$defs", {}))
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.get("description", ""),
            "schema": {k: v for k, v in prop.items() if k not in ("description", "title")},
        }
        for name, prop in schema["properties"].items()
    ]


def _operation(route: Route, refs: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.name, "summary": route.summary, "tags": [route.tag]}
    params = [
        {"name": p, "in": "path", "required": True, "schema": _PATH_PARAMS[p]}
        for p in _PARAM.findall(route.path)
    ]
    if route.query is not None:
        params += _query_parameters(route.query)
    if route.name == "createConnection":
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Same key and body → same response; same key, other body → 422. "
                "1-255 visible ASCII characters.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_SHAPE.pattern},
            }
        )
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
        }
    ok: dict[str, Any] = {"description": _STATUS_TEXT.get(route.status, "OK")}
    if route.response is not None:
        ok["content"] = {route.media_type: {"schema": refs[(route.response, "serialization")]}}
    elif route.media_type == "text/plain":
        ok["content"] = {"text/plain": {"schema": {"type": "string"}}}
    else:
        ok["content"] = {"application/json": {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {str(route.status): ok}
    problem = {"application/problem+json": {"schema": refs[(Problem, "serialization")]}}
    statuses = set(route.errors) | ({401, 403} if route.scope is not None else set())
    for status in sorted(statuses):
        responses[str(status)] = {"description": _STATUS_TEXT[status], "content": problem}
        if status in _HEADERS:
            responses[str(status)]["headers"] = _HEADERS[status]
        if status == 409 and route.name == "createConnection":
            responses[str(status)]["headers"] = _IN_PROGRESS_HEADERS
    op["responses"] = responses
    if route.scope is not None:
        op["security"] = [{"bearerApiKey": [route.scope.value]}, {"headerApiKey": [route.scope.value]}]
        op["description"] = f"Requires an API key with the `{route.scope.value}` scope."
    return op


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document (cached: it depends only on code)."""
    refs, defs = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sfconnect Manager API",
            "version": "1.0.0",
            "description": "Salesforce connections for integration code: create them, read their tokens. "
            "Errors are RFC 9457 problem documents whose `type` is stable per error code.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearerApiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "sfc_<id>_<secret>",
                    "description": AUTH_RULE,
                },
                "headerApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": AUTH_RULE,
                },
            },
        },
    }
