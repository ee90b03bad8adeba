"""Composition root: ``create_app(state)`` builds the aiohttp application with its routes and middlewares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from shared.logging import get_logger

from . import metadata, oauth, rest
from .admin import setup_admin_routes
from .common import API_USAGE, AUTH, STATE_KEY, apply_knobs, authenticate, bearer, path_org, unavailable
from .config import build_state
from .model import SimConfig
from .soap import LIMIT_EXCEEDED, fault_response, session_id_of
from .state import SimState

log = get_logger("salesforce_sim")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SoapObserver = Callable[[bytes, bytes, int], None]
"""Called with (request body, response body, HTTP status) for every SOAP exchange (tests validate them)."""

V = r"{version:v\d+\.\d+|latest}"  # "latest" resolves to the newest version
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/services/oauth2/authorize", oauth.authorize),
    ("POST", "/services/oauth2/authorize", oauth.authorize),
    ("POST", "/services/oauth2/token", oauth.token),
    ("POST", "/services/oauth2/revoke", oauth.revoke),
    ("GET", "/services/oauth2/revoke", oauth.revoke),
    ("GET", "/id/{org_id}/{user_id}", oauth.identity),
    ("POST", "/id/{org_id}/{user_id}", oauth.identity),
    ("GET", "/services/data", rest.versions),
    ("GET", "/services/data/", rest.versions),
    ("GET", f"/services/data/{V}{{slash:/?}}", rest.resources),
    ("GET", f"/services/data/{V}/sobjects{{slash:/?}}", rest.describe_global),
    ("POST", f"/services/data/{V}/sobjects/{{sobject}}{{slash:/?}}", rest.create_record),
    ("GET", f"/services/data/{V}/sobjects/{{sobject}}/{{id}}", rest.get_record),
    ("DELETE", f"/services/data/{V}/sobjects/{{sobject}}/{{id}}", rest.delete_record),
    ("GET", f"/services/data/{V}/query{{slash:/?}}", rest.query),
    ("GET", f"/services/data/{V}/limits{{slash:/?}}", rest.limits),
    ("GET", f"/services/data/{V}/apps/oauth/credentials/{{app}}", rest.oauth_credentials),
    ("GET", f"/services/data/{V}/apps/oauth/credentials/{{app}}/{{consumer}}", rest.oauth_credentials),
    ("POST", r"/services/Soap/m/{version:\d+\.\d+}{tail:(/.*)?}", metadata.soap),
]


def _kind(request: web.Request) -> str:
    path = request.path
    if path.startswith("/org/"):
        path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
    if path.startswith("/services/Soap/m/"):
        return "soap"
    if path.startswith(("/services/data/v", "/services/data/latest")):
        return "rest"
    if path.startswith("/id/"):
        return "identity"
    return "other"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unexpected failures become Salesforce-shaped 500s; the log line names the path, never the body."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.error("unhandled_error", path=request.path, method=request.method, error_type=type(exc).__name__)
        if _kind(request) == "soap":
            return fault_response("sf:UNKNOWN_EXCEPTION", "An unexpected error occurred in the simulator.")
        return web.json_response(
            [{"message": "An unexpected error occurred in the simulator.", "errorCode": "UNKNOWN_EXCEPTION"}],
            status=500,
        )


@web.middleware
async def knobs_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency, injected 5xx and the API request limit for calls that name an org (path or session)."""
    kind = _kind(request)
    if kind == "other":
        return await handler(request)
    token = session_id_of(await request.read()) if kind == "soap" else bearer(request)
    auth = authenticate(request, token)
    if auth is not None:
        request[AUTH] = auth
    org = auth.org if auth else path_org(request)
    if org is None:
        return await handler(request)
    verdict = await apply_knobs(request, org, count_api=auth is not None and kind in ("rest", "soap"))
    if verdict == "5xx":
        return unavailable()
    if verdict == "limit":
        if kind == "soap":
            return fault_response(*LIMIT_EXCEEDED)
        return web.json_response(
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], status=403
        )
    response = await handler(request)
    usage = request.get(API_USAGE)
    if usage is not None:
        used, limit = usage
        response.headers["Sforce-Limit-Info"] = (
            f"api-usage={used}/{limit if limit is not None else 'unlimited'}"
        )
    return response


def soap_capture(observer: SoapObserver | None) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if observer is None or _kind(request) != "soap":
            return await handler(request)
        body = await request.read()
        response = await handler(request)
        if isinstance(response, web.Response) and response.body is not None:
            observer(body, bytes(response.body), response.status)  # type: ignore[arg-type]
        return response

    return middleware


def setup_routes(app: web.Application) -> None:
    """Every Salesforce route twice: on the login host and under an org's My Domain (``/org/{org}``)."""
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/org/{org}" + path, handler)
    setup_admin_routes(app)


def create_app(
    state: SimState | SimConfig | dict[str, Any] | str | Path | None = None,
    *,
    soap_observer: SoapObserver | None = None,
) -> web.Application:
    """The simulator application over ``state`` (a SimState, a config, a dict, a file path or defaults)."""
    app = web.Application(
        middlewares=[soap_capture(soap_observer), error_middleware, knobs_middleware],
        client_max_size=32 * 1024 * 1024,
    )
    app[STATE_KEY] = build_state(state)
    setup_routes(app)
    return app
