"""HTTP views: OAuth authorize/callback, orgs, objects, health, metrics. Each parses, calls, maps."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from builder.http.context import CONTEXT, HttpContext
from builder.http.middlewares import problem
from builder.salesforce import oauth
from builder.salesforce.errors import OAuthError
from builder.salesforce.oauth import TokenResponse
from builder.salesforce.rest import Access
from builder.store import (
    ObjectsCache,
    OrgAuthorization,
    PendingAuthorization,
    StateRejected,
    StoreUnavailable,
)
from shared.contracts.commands import ORG_ID_PATTERN
from shared.errors import InvalidInput, NotFound, SfconnectError
from shared.logging import get_logger

log = get_logger(__name__)
_ORG_ID = re.compile(ORG_ID_PATTERN)
_TRUE = {"1", "true", "yes", "on"}
ECHO_CHARS = 64  # how much of a caller's value an error message quotes
OBJECT_FIELDS = (
    "name", "label", "labelPlural", "keyPrefix", "custom", "queryable", "createable", "updateable", "deletable",
    "retrieveable", "searchable", "triggerable",
)  # fmt: skip


def _quote(value: str, limit: int = ECHO_CHARS) -> str:
    """At most the first ``limit`` characters of a caller's value, as a repr, for an error message."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _ctx(request: web.Request) -> HttpContext:
    return request.app[CONTEXT]


def _page(title: str, message: str, status: int) -> web.Response:
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html")


def _org_id(request: web.Request) -> str:
    org_id = request.match_info["org_id"]
    if not _ORG_ID.fullmatch(org_id):
        raise InvalidInput(
            f"{_quote(org_id)} is not a Salesforce org id (15 or 18 characters starting with 00D)"
        )
    return org_id


async def _start_authorization(request: web.Request) -> tuple[str, datetime]:
    """Store a single-use state with its PKCE verifier; the Salesforce authorize URL and when it expires."""
    ctx = _ctx(request)
    settings = ctx.settings
    sandbox = request.query.get("sandbox", "").lower() in _TRUE
    login_url = request.query.get("login_url", "").rstrip("/")
    if not login_url:
        login_url = settings.salesforce_sandbox_login_url if sandbox else settings.salesforce_login_url
    if login_url not in settings.login_urls():
        raise InvalidInput(f"login_url must be one of: {', '.join(settings.login_urls())}")
    is_sandbox = sandbox or login_url == settings.salesforce_sandbox_login_url
    state, verifier = oauth.new_state(), oauth.new_pkce_verifier()
    expires_at = ctx.clock() + timedelta(seconds=settings.oauth_state_ttl_seconds)
    await ctx.require_store().save_oauth_state(
        state,
        PendingAuthorization(verifier, login_url=login_url, is_sandbox=is_sandbox, expires_at=expires_at),
    )
    location = oauth.authorize_url(
        login_url=login_url,
        client_id=settings.salesforce_client_id,
        redirect_uri=settings.salesforce_callback_url,
        state=state,
        verifier=verifier,
    )
    log.info("authorization started", login_url=login_url, is_sandbox=is_sandbox, method=request.method)
    return location, expires_at


async def authorize(request: web.Request) -> web.StreamResponse:
    """GET (admin key): 302 to the login host's authorize page with a single-use state and S256 challenge."""
    location, _ = await _start_authorization(request)
    raise web.HTTPFound(location, headers={"Cache-Control": "no-store"})


async def authorize_link(request: web.Request) -> web.StreamResponse:
    """POST (admin key): the same authorize URL as JSON, for an admin to open in a browser."""
    location, expires_at = await _start_authorization(request)
    body = {"authorize_url": location, "expires_at": expires_at.isoformat()}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def callback(request: web.Request) -> web.StreamResponse:
    """Exchange the code, verify the signature, store the authorization; answer with a plain page."""
    try:
        return await _callback(request)
    except StoreUnavailable as exc:
        page = _page(
            "Authorization failed",
            "The Builder's database is not answering; start the authorization again in a minute.",
            503,
        )
        page.headers["Retry-After"] = str(int(exc.retry_after or 5))
        return page


async def _callback(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    state = request.query.get("state", "")
    if not state:
        return _page("Authorization failed", "The sign-in answer carries no state; start again.", 400)
    try:
        pending = await ctx.require_store().consume_oauth_state(state, ctx.clock())
    except StateRejected as exc:
        return _page("Authorization failed", exc.message, 400)
    if error := request.query.get("error"):
        detail = request.query.get("error_description", "")
        detail = detail if len(detail) <= 4 * ECHO_CHARS else detail[: 4 * ECHO_CHARS] + "…"
        error = error if len(error) <= ECHO_CHARS else error[:ECHO_CHARS] + "…"
        return _page("Authorization failed", f"Salesforce answered {error}: {detail}".strip(": "), 400)
    code = request.query.get("code", "")
    if not code:
        return _page("Authorization failed", "The sign-in answer carries no authorization code.", 400)
    try:
        token = await ctx.require_oauth().exchange_code(
            login_url=pending.login_url, code=code, verifier=pending.code_verifier
        )
    except OAuthError as exc:
        return _page(
            "Authorization failed", f"Salesforce refused the code: {exc.error} ({exc.description})", 400
        )
    except SfconnectError as exc:
        status = 503 if exc.retryable else 400
        return _page("Authorization failed", exc.message, status)
    scopes = token.scope.split()
    is_sandbox = await _org_is_sandbox(ctx, token, pending.is_sandbox)
    if not token.refresh_token or not token.org_id:
        return _page(
            "Authorization failed",
            "Salesforce returned no refresh token: the Builder's app needs the refresh_token scope.",
            400,
        )
    org = await ctx.require_store().save_authorization(
        OrgAuthorization(
            org_id=token.org_id,
            user_id=token.user_id,
            instance_url=token.instance_url,
            login_url=pending.login_url,
            is_sandbox=is_sandbox,
            scopes=scopes,
            refresh_token=token.refresh_token,
            access_token=token.access_token,
        )
    )
    log.info("org authorized", org_id=org.org_id, instance_url=org.instance_url)
    return _page(
        "Builder authorized", f"The Builder is authorized in org {org.org_id} ({org.instance_url}).", 200
    )


async def _org_is_sandbox(ctx: HttpContext, token: TokenResponse, assumed: bool) -> bool:
    """Ask the org (Organization.IsSandbox): a sandbox reached through its My Domain says so itself."""
    if ctx.rest is None:
        return assumed
    try:
        served = {v.get("version") for v in await ctx.rest.versions(token.instance_url)}
        if ctx.settings.salesforce_api_version not in served:
            log.warning(
                "the org does not serve the pinned API version; set SALESFORCE_API_VERSION",
                pinned=ctx.settings.salesforce_api_version,
                newest=max(served, key=lambda v: float(v or 0), default=None),
            )
        answer = await ctx.rest.is_sandbox(Access(token.instance_url, token.access_token))
    except SfconnectError as exc:
        log.info("org type unreadable; keeping the login host's", reason=exc.code)
        return assumed
    return assumed if answer is None else answer


async def list_orgs(request: web.Request) -> web.StreamResponse:
    orgs = await _ctx(request).require_store().list_orgs()
    return web.json_response({"orgs": [o.public() for o in orgs]})


def _summary(sobject: dict[str, Any]) -> dict[str, Any]:
    return {k: sobject.get(k) for k in OBJECT_FIELDS if k in sobject}


async def list_objects(request: web.Request) -> web.StreamResponse:
    """describeGlobal, served from a cache kept fresh with If-Modified-Since."""
    ctx = _ctx(request)
    org_id = _org_id(request)
    store = ctx.require_store()
    org = await ctx.require_salesforce().org(org_id)
    cache = await store.get_objects_cache(org_id)
    now = ctx.clock()
    fresh = cache is not None and now - cache.fetched_at < timedelta(
        seconds=ctx.settings.objects_cache_seconds
    )
    if cache is None or not fresh or request.query.get("refresh", "").lower() in _TRUE:
        since = (cache.last_modified or cache.fetched_at) if cache else None
        result = await org.describe_global(if_modified_since=since)
        if result is not None:
            cache = ObjectsCache(
                org.authorization.org_id,
                [_summary(s) for s in result.sobjects],
                now,
                result.last_modified or now,
            )
        elif cache is not None:
            cache = ObjectsCache(cache.org_id, cache.sobjects, now, cache.last_modified)
        if cache is None:
            raise NotFound("Salesforce answered 'not modified' but nothing was cached; try again")
        await store.save_objects_cache(cache)
    last_modified = (cache.last_modified or cache.fetched_at).replace(microsecond=0)
    headers = {"Last-Modified": format_datetime(last_modified, usegmt=True), "Cache-Control": "private"}
    if _not_modified_since(request, last_modified):
        return web.Response(status=304, headers=headers)
    body = {"org_id": cache.org_id, "fetched_at": cache.fetched_at.isoformat(), "sobjects": cache.sobjects}
    return web.json_response(body, headers=headers)


def _not_modified_since(request: web.Request, last_modified: datetime) -> bool:
    raw = request.headers.get("If-Modified-Since")
    if not raw:
        return False
    try:
        return last_modified <= parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return False


async def delete_org(request: web.Request) -> web.StreamResponse:
    """Revoke the Builder's refresh token in the org and forget the authorization."""
    ctx = _ctx(request)
    org_id = _org_id(request)
    store = ctx.require_store()
    org = await store.get_org(org_id)
    if org is None:
        raise NotFound(f"the Builder holds no authorization for org {org_id}")
    revoked = False
    if org.refresh_token:
        try:
            revoked = await ctx.require_oauth().revoke(host=org.instance_url, token=org.refresh_token)
        except OAuthError as exc:
            log.info("refresh token revoke refused", org_id=org.org_id, error=exc.error)
    await store.delete_org(org.org_id)
    log.info("org authorization removed", org_id=org.org_id, revoked=revoked)
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready when the database answers and the broker connection is up; ``checks`` says which is down."""
    checks: dict[str, str] = {}
    failures = []
    for name, check in _ctx(request).readiness.items():
        try:
            async with asyncio.timeout(3):
                await check()
            checks[name] = "up"
        except Exception as exc:
            checks[name] = "down"
            failures.append(f"{name} down ({type(exc).__name__})")
    if failures or not checks:
        response = problem(
            503,
            "not_ready",
            "not ready: " + ("; ".join(failures) or "starting"),
            instance=request.path,
            extensions={"checks": checks},
        )
        response.headers["Retry-After"] = "5"
        return response
    return web.json_response({"status": "ready", "checks": checks})


async def metrics(request: web.Request) -> web.StreamResponse:
    data = generate_latest(_ctx(request).metrics.registry)
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})
