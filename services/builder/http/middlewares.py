"""HTTP middlewares: request ids, metrics, the admin API key, and RFC 9457 problem responses."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from builder.http.context import CONTEXT
from shared.contracts import ErrorCode
from shared.errors import SfconnectError
from shared.logging import get_logger, redact_text

log = get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROBLEM_TYPE = "application/problem+json"
# The callback is reached by the admin's browser coming back from Salesforce: it carries no key, and is
# protected by its single-use state, which only a caller holding the admin key can create (authorize).
PUBLIC_PATHS = frozenset({"/v1/salesforce/callback", "/v1/openapi.json"})
# The X-Request-Id shape adopted from a caller (the Manager's); any other value is replaced by a fresh id.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

STATUS_BY_CODE = {
    "invalid_input": 400,
    "invalid_state": 400,
    "unauthenticated": 401,
    "not_found": 404,
    ErrorCode.ORG_NOT_AUTHORIZED.value: 404,
    ErrorCode.AUTHORIZATION_REVOKED.value: 409,
    ErrorCode.INSUFFICIENT_PERMISSIONS.value: 409,
    "database_unavailable": 503,
    ErrorCode.SALESFORCE_UNAVAILABLE.value: 503,
    ErrorCode.REQUEST_LIMIT_EXCEEDED.value: 503,
    "salesforce_error": 502,
    "oauth_error": 502,
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str = "",
    title: str = "",
    extensions: dict[str, Any] | None = None,
) -> web.Response:
    """An ``application/problem+json`` response (RFC 9457) with our stable ``code`` as an extension."""
    body: dict[str, Any] = {
        "type": f"https://sfconnect.dev/problems/{code}",
        "title": title or code.replace("_", " "),
        "status": status,
        "detail": redact_text(detail),
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extensions or {})
    return web.json_response(body, status=status, content_type=PROBLEM_TYPE)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id (the caller's X-Request-Id when it has a safe shape, else a fresh one) to every
    log line; echo it back; count and time the request."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    ctx = request.app[CONTEXT]
    started = time.monotonic()
    status = 500
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
            status = response.status
            response.headers["X-Request-Id"] = request_id
            return response
        except web.HTTPException as exc:
            status = exc.status
            exc.headers["X-Request-Id"] = request_id
            raise
        finally:
            ctx.metrics.http_requests.labels(request.method, route, str(status)).inc()
            ctx.metrics.http_seconds.labels(route).observe(time.monotonic() - started)


def _digest(value: str) -> bytes:
    # A header with bytes that are not UTF-8 arrives holding surrogate escapes: hash them as they came
    # (it cannot equal the key, which settings hold as valid text), rather than fail with a 500.
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


@web.middleware
async def admin_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every ``/v1`` path but the OAuth callback and the OpenAPI document needs the admin API key."""
    if not request.path.startswith("/v1/") or request.path in PUBLIC_PATHS:
        return await handler(request)
    expected = request.app[CONTEXT].settings.admin_api_key.get_secret_value()
    given = request.headers.get("X-API-Key", "")
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if not given and scheme.lower() == "bearer":
        given = credential.strip()
    if not given or not hmac.compare_digest(_digest(given), _digest(expected)):
        response = problem(
            401,
            "unauthenticated",
            "send the admin API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            instance=request.path,
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="sfconnect-builder"'
        return response
    return await handler(request)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Translate every error into a problem response, in one place."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == PROBLEM_TYPE:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        response = problem(exc.status, code, exc.text or exc.reason, instance=request.path)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except SfconnectError as exc:
        status = STATUS_BY_CODE.get(exc.code, 500 if not exc.retryable else 503)
        response = problem(status, exc.code, exc.message, instance=request.path)
        if exc.retryable:
            retry_after = getattr(exc, "retry_after", None) or 5
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        log.info("request failed", path=request.path, code=exc.code, status=status)
        return response
    except Exception:
        log.exception("unexpected error serving a request", path=request.path)
        return problem(500, "internal_error", "the Builder failed unexpectedly", instance=request.path)
