"""Helpers every handler uses: the state key, host/org resolution, sessions and Salesforce-shaped errors."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .model import User
from .state import Org, SimState
from .tokens import Session, digest

STATE_KEY = web.AppKey("sim_state", SimState)
API_VERSIONS = [f"{v}.0" for v in range(31, 69)]
GATED = web.RequestKey("sim_gated", bool)
API_USAGE = web.RequestKey("sim_api_usage", tuple)
NO_STORE = {"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"}


def state_of(request: web.Request) -> SimState:
    return request.app[STATE_KEY]


def base_url(request: web.Request) -> str:
    """The simulator's public base URL: configured, or the scheme and host the client used."""
    configured = state_of(request).base_url
    if configured:
        return configured
    return f"{request.scheme}://{request.host}"


def instance_url(request: web.Request, org: Org) -> str:
    return f"{base_url(request)}/org/{org.key}"


def host_url(request: web.Request) -> str:
    """The host this request was addressed to: the login host or an org's My Domain."""
    org = path_org(request)
    return instance_url(request, org) if org else base_url(request)


def path_org(request: web.Request) -> Org | None:
    """The org named by the ``/org/{org}`` prefix; unknown keys end the request with 404."""
    key = request.match_info.get("org")
    if key is None:
        return None
    org = state_of(request).org(key)
    if org is None:
        raise web.HTTPNotFound(text=f"No org is served at /org/{key}", content_type="text/plain")
    return org


def rest_error(status: int, code: str, message: str, fields: list[str] | None = None) -> web.Response:
    """Salesforce REST's error body: a JSON array of {message, errorCode[, fields]}."""
    item: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        item["fields"] = fields
    return web.json_response([item], status=status)


def oauth_error(error: str, description: str, status: int = 400) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description}, status=status, headers=NO_STORE
    )


def json_body(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data), status=status, content_type="application/json", headers=headers
    )


@dataclass
class Auth:
    org: Org
    session: Session
    user: User
    token: str


AUTH = web.RequestKey("sim_auth", Auth)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return None


def authenticate(request: web.Request, token: str | None) -> Auth | None:
    """The live session for ``token`` on this host; touching it extends its inactivity timeout."""
    if not token:
        return None
    state = state_of(request)
    peek = state.tokens.sessions.get(digest(token))
    if peek is None:
        return None
    org = state.org(peek.org_key)
    prefix_org = path_org(request)
    if org is None or (prefix_org is not None and prefix_org is not org):
        return None
    now = state.now()
    session = state.tokens.live_session(token, now=now, timeout=org.knobs.session_timeout_seconds)
    if session is None:
        return None
    user = org.user(session.user_id)
    if user is None or not user.is_active:
        return None
    session.last_used = now
    return Auth(org, session, user, token)


SERVICE_UNAVAILABLE_HTML = (
    "<html><head><title>Service Unavailable</title></head><body>"
    "<h1>Service Unavailable</h1><p>The server is temporarily unable to service your request "
    "(injected by the Salesforce simulator).</p></body></html>"
)


async def apply_knobs(request: web.Request, org: Org, *, count_api: bool) -> str | None:
    """Latency, injected 5xx and the API request limit; returns "5xx" or "limit" when the call must fail."""
    if request.get(GATED):
        return None
    request[GATED] = True
    state = state_of(request)
    knobs = org.knobs
    if knobs.latency_ms:
        await asyncio.sleep(knobs.latency_ms / 1000)
    if knobs.fail_next_5xx > 0:
        knobs.fail_next_5xx -= 1
        return "5xx"
    if knobs.error_rate_5xx > 0 and state.rng.random() < knobs.error_rate_5xx:
        return "5xx"
    if count_api:
        if knobs.api_limit is not None and knobs.api_requests_used >= knobs.api_limit:
            return "limit"
        knobs.api_requests_used += 1
        request[API_USAGE] = (knobs.api_requests_used, knobs.api_limit)
    return None


def unavailable() -> web.Response:
    return web.Response(status=503, text=SERVICE_UNAVAILABLE_HTML, content_type="text/html")
