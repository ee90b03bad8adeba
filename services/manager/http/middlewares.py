"""Middlewares: metrics, request id + log context, the one error middleware (RFC 9457), API-key auth."""

from __future__ import annotations

import math
import re
import time
import uuid

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from manager.errors import (
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InsufficientScope,
    TokenRefreshFailed,
    Unauthenticated,
)
from manager.http.problems import NotReady, PayloadTooLarge, RequestValidationFailed, UnsupportedMediaType
from manager.http.routes import ROUTE_BY_NAME
from manager.http.schemas import Problem
from manager.http.state import COMPONENTS, METRICS, PRINCIPAL, REQUEST_ID
from shared.errors import Conflict, InvalidInput, NotFound, RetryableError, SfconnectError
from shared.logging import get_logger

log = get_logger("manager.http")

PROBLEM_BASE = "https://sfconnect.dev/problems/"
PROBLEM_JSON = "application/problem+json"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def status_for(exc: SfconnectError) -> int:
    """The HTTP status of a typed error (one table for the whole API)."""
    table: tuple[tuple[type[SfconnectError], int], ...] = (
        (Unauthenticated, 401),
        (InsufficientScope, 403),
        (NotFound, 404),
        (IdempotencyKeyReused, 422),
        (RequestValidationFailed, 422),
        (UnsupportedMediaType, 415),
        (PayloadTooLarge, 413),
        (Conflict, 409),
        (InvalidInput, 400),
        (RetryableError, 503),
        (TokenRefreshFailed, 502),
    )
    for cls, status in table:
        if isinstance(exc, cls):
            return status
    return 500


def problem(
    request: web.Request,
    *,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, object]] | None = None,
    cause: str | None = None,
    checks: dict[str, str] | None = None,
) -> web.Response:
    """An ``application/problem+json`` response with a stable ``type`` for ``code``."""
    body = Problem(
        type=PROBLEM_BASE + code,
        title=code.replace("_", " ").capitalize(),
        status=status,
        detail=detail,
        instance=request.path,
        code=code,
        request_id=request.get(REQUEST_ID),
        errors=errors,  # type: ignore[arg-type]
        cause=cause,
        checks=checks,  # type: ignore[arg-type]
    )
    return web.json_response(
        body.model_dump(mode="json", exclude_none=True),
        status=status,
        headers=headers,
        content_type=PROBLEM_JSON,
    )


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by route template."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics = request.app[METRICS]
        metrics.http_requests.labels(request.method, route, str(status)).inc()
        metrics.http_duration.labels(request.method, route).observe(time.perf_counter() - started)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Adopt a sane incoming ``X-Request-ID`` or make one; bind it to every log line; echo it back."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers["X-Request-ID"] = request_id
            raise
        response.headers["X-Request-ID"] = request_id
        return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place errors become responses: typed errors and HTTP errors → RFC 9457 documents."""
    try:
        return await handler(request)
    except SfconnectError as exc:
        status = status_for(exc)
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="sfconnect"'
        if isinstance(exc, RetryableError):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after or 5)))
        elif isinstance(exc, IdempotencyKeyInProgress):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        if status >= 500:
            log.warning("request failed", code=exc.code, status=status, detail=exc.message)
        errors = getattr(exc, "errors", None) if isinstance(exc, RequestValidationFailed) else None
        cause = getattr(exc, "cause", None)
        checks = exc.checks if isinstance(exc, NotReady) else None
        return problem(
            request,
            status=status,
            code=exc.code,
            detail=exc.message,
            headers=headers,
            errors=errors,
            cause=cause,
            checks=checks,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return problem(request, status=exc.status, code=code, detail=exc.reason, headers=headers)
    except Exception:
        log.exception("unexpected error while answering a request")
        return problem(request, status=500, code="internal_error", detail="an unexpected error occurred")


def _presented_key(request: web.Request) -> str | None:
    """The key to check: a Bearer ``Authorization`` wins; else ``X-API-Key`` (any other scheme is ignored).

    An ``Authorization`` header with another scheme (e.g. ``Basic`` added by a proxy) and no ``X-API-Key``
    presents an empty key, so the answer is "not valid" rather than "missing".
    """
    auth = request.headers.get("Authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
    header = request.headers.get("X-API-Key")
    if header is not None:
        return header.strip()
    return "" if auth else None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every operation with a scope in the route table needs an API key carrying that scope."""
    route = ROUTE_BY_NAME.get(request.match_info.route.name or "")
    if route is not None and route.scope is not None:
        authenticator = request.app[COMPONENTS].authenticator
        key = await authenticator.authenticate(_presented_key(request))
        authenticator.authorize(key, route.scope)
        request[PRINCIPAL] = key
        structlog.contextvars.bind_contextvars(api_key_id=key.id)
    return await handler(request)


MIDDLEWARES = (metrics_middleware, request_id_middleware, error_middleware, auth_middleware)
