"""OAuth 2.0 endpoints: authorize (consent page or auto-approve), token, revoke, and the identity URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web

from .common import (
    NO_STORE,
    apply_knobs,
    authenticate,
    base_url,
    bearer,
    host_url,
    instance_url,
    json_body,
    oauth_error,
    path_org,
    state_of,
    unavailable,
)
from .model import OAuthApp, User
from .scopes import requested_scopes
from .state import Org, SimState
from .tokens import AuthCode

_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
        .decode()
        .rstrip("=")
    )


def token_payload(
    request: web.Request,
    *,
    org: Org,
    user: User,
    app: OAuthApp,
    access: str,
    refresh: str | None,
    scopes: list[str],
) -> dict[str, str]:
    """Salesforce's token response, with the HMAC-SHA256 signature over id + issued_at."""
    issued_at = str(int(state_of(request).now() * 1000))
    identity = f"{host_url(request)}/id/{org.org_id}/{user.id}"
    mac = hmac.new(app.consumer_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
    payload = {"access_token": access}
    if refresh:
        payload["refresh_token"] = refresh
    payload.update(
        {
            "signature": base64.b64encode(mac).decode(),
            "scope": " ".join(scopes),
            "instance_url": instance_url(request, org),
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
    )
    return payload


def token_response(payload: Mapping[str, str]) -> web.Response:
    return json_body(dict(payload), headers=NO_STORE)


def lookup_client(request: web.Request, client_id: str | None) -> OAuthApp | None:
    """The OAuth client by consumer key, if it exists, has propagated and is usable on this host."""
    state = state_of(request)
    app = state.find_app(client_id or "")
    if app is None or not state.app_ready(app):
        return None
    org = path_org(request)
    if org is not None and app.org_key not in (None, org.key):
        return None
    return app


# --- authorize -------------------------------------------------------------------------------
def _error_page(error: str, description: str) -> web.Response:
    body = (
        "<html><head><title>OAuth Error</title></head><body><h1>OAuth Error</h1>"
        f"<p>error={html.escape(error)}&amp;error_description={html.escape(description)}</p></body></html>"
    )
    return web.Response(status=400, text=body, content_type="text/html")


def _redirect(redirect_uri: str, params: dict[str, str | None]) -> web.Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    sep = "&" if "?" in redirect_uri else "?"
    raise web.HTTPFound(redirect_uri + sep + query)


_PASSED = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


def _consent_page(
    params: Mapping[str, str], app: OAuthApp, username: str, message: str | None
) -> web.Response:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params[name], quote=True)}">'
        for name in _PASSED
        if params.get(name)
    )
    note = f'<p class="error">{html.escape(message)}</p>' if message else ""
    body = (
        "<!doctype html><html><head><title>Allow Access?</title></head><body>"
        f"<h1>Allow Access?</h1><p>{html.escape(app.label or app.full_name)} is asking to access your "
        f"Salesforce data (scopes: {html.escape(params.get('scope') or 'default')}).</p>{note}"
        '<form method="post" action="">'
        f"{hidden}"
        '<label>Username <input type="text" name="username" '
        f'value="{html.escape(username, quote=True)}"></label>'
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button>'
        "</form></body></html>"
    )
    return web.Response(text=body, content_type="text/html", headers=NO_STORE)


def _pick_user(state: SimState, request: web.Request, app: OAuthApp, username: str) -> tuple[Org, User] | str:
    prefix = path_org(request)
    if username:
        found = state.find_user(username)
        if found is None:
            return "Please check your username. We don't recognize it."
        org, user = found
    else:
        org_key = prefix.key if prefix else app.org_key
        org = state.org(org_key) if org_key else next(iter(state.orgs.values()), None)  # type: ignore[assignment]
        user = org.admin_user() if org else None  # type: ignore[assignment]
        if org is None or user is None:
            return "Enter your username."
    if prefix is not None and org is not prefix:
        return "This username does not belong to this My Domain."
    if app.org_key is not None and app.org_key != org.key:
        return "This app is not available in your org."
    if not user.is_active:
        return "Your account is inactive. Contact your administrator."
    return org, user


async def authorize(request: web.Request) -> web.Response:
    """GET shows the consent page (or approves at once with auto_approve); POST is the form's answer."""
    state = state_of(request)
    params: Mapping[str, str] = request.query
    if request.method == "POST":
        form = await request.post()
        params = {**request.query, **{k: str(v) for k, v in form.items()}}
    app = lookup_client(request, params.get("client_id"))
    if app is None:
        return _error_page("invalid_client_id", "client identifier invalid")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in app.callback_urls:
        return _error_page("redirect_uri_mismatch", "redirect_uri must match configuration")
    client_state = params.get("state")

    def fail(error: str, description: str) -> web.Response:
        return _redirect(
            redirect_uri, {"error": error, "error_description": description, "state": client_state}
        )

    if params.get("response_type") != "code":
        return fail("unsupported_response_type", "response type not supported")
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method")
    if method and method != "S256":
        return fail("invalid_request", "invalid code_challenge_method")
    if challenge is None and app.pkce_required:
        return fail("invalid_request", "missing required code challenge")
    if challenge is not None and not _CHALLENGE.fullmatch(challenge):
        return fail("invalid_request", "invalid code challenge")
    scopes = requested_scopes(app, params.get("scope"))
    if scopes is None:
        return fail("invalid_scope", "the requested scope is not allowed")
    username = params.get("username") or params.get("login_hint") or ""
    if request.method == "GET" and not state.auto_approve:
        return _consent_page(params, app, username, None)
    if request.method == "POST" and params.get("decision") == "deny":
        return fail("access_denied", "end-user denied authorization")
    picked = _pick_user(state, request, app, username)
    if isinstance(picked, str):
        return _consent_page(params, app, username, picked)
    org, user = picked
    if await apply_knobs(request, org, count_api=False) == "5xx":
        return unavailable()
    code = state.tokens.new_code(
        AuthCode(
            app_key=app.consumer_key,
            org_key=org.key,
            user_id=user.id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            challenge=challenge,
            expires_at=state.now() + state.code_lifetime,
        )
    )
    return _redirect(redirect_uri, {"code": code, "state": client_state})


# --- token, revoke, identity ---------------------------------------------------------------
async def token(request: web.Request) -> web.Response:
    from .grants import GRANTS

    if request.content_type != "application/x-www-form-urlencoded":
        return oauth_error("invalid_request", "must use application/x-www-form-urlencoded")
    form = {k: str(v) for k, v in (await request.post()).items()}
    grant = GRANTS.get(form.get("grant_type", ""))
    if grant is None:
        return oauth_error("unsupported_grant_type", "grant type not supported")
    return await grant(request, form)


async def revoke(request: web.Request) -> web.Response:
    """Revoke an access token, or a refresh token together with its access tokens."""
    value = request.query.get("token")
    if request.method == "POST":
        form = await request.post()
        value = str(form.get("token") or value or "")
    if not value:
        return oauth_error("invalid_request", "token parameter is required")
    if not state_of(request).tokens.revoke(value):
        return oauth_error("invalid_token", "invalid token")
    return web.Response(status=200, headers=NO_STORE)


async def identity(request: web.Request) -> web.Response:
    auth = authenticate(request, bearer(request) or request.query.get("oauth_token"))
    if auth is None:
        return web.Response(status=403, text="Bad_OAuth_Token", content_type="text/plain")
    org_id, user_id = request.match_info["org_id"], request.match_info["user_id"]
    user = auth.org.user(user_id)
    if org_id[:15] != auth.org.org_id[:15] or user is None:
        return web.Response(status=404, text="Bad_Id", content_type="text/plain")
    base = instance_url(request, auth.org)
    return json_body(
        {
            "id": f"{base_url(request)}/id/{auth.org.org_id}/{user.id}",
            "asserted_user": user.id == auth.user.id,
            "user_id": user.id,
            "organization_id": auth.org.org_id,
            "username": user.username,
            "nick_name": user.username.split("@")[0],
            "display_name": user.name,
            "email": user.email,
            "active": user.is_active,
            "user_type": "STANDARD",
            "is_lightning_login_user": False,
            "urls": {
                "rest": f"{base}/services/data/v{{version}}/",
                "sobjects": f"{base}/services/data/v{{version}}/sobjects/",
                "query": f"{base}/services/data/v{{version}}/query/",
                "metadata": f"{base}/services/Soap/m/{{version}}/{auth.org.org_id[:15]}",
            },
        }
    )
