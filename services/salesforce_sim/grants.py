"""The token endpoint's grant types: authorization_code, refresh_token, JWT bearer, client_credentials."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509

from .common import apply_knobs, base_url, instance_url, oauth_error, path_org, state_of, unavailable
from .model import OAuthApp
from .oauth import lookup_client, s256, token_payload, token_response
from .scopes import REFRESH_VALUES, allowed_scopes
from .state import Org

Form = dict[str, str]
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_JWT_LIFETIME = 180  # "within 3 minutes"
JWT_SKEW = 10  # seconds of clock skew tolerated on exp
# Descriptions Salesforce's sources do not give (docs/simulator.md lists them as choices).
NO_STANDARD_SCOPE = "no standard scope other than refresh_token"
NOT_API_ONLY = "client credentials user must have the API Only permission"


def _secret_ok(app: OAuthApp, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), app.consumer_secret.encode())


async def _gate(request: web.Request, org: Org) -> web.Response | None:
    return unavailable() if await apply_knobs(request, org, count_api=False) == "5xx" else None


def _issue(
    request: web.Request,
    *,
    org: Org,
    user_id: str,
    app: OAuthApp,
    scopes: list[str],
    flow: str,
    grant_id: str | None = None,
    refresh: str | None = None,
) -> web.Response:
    state = state_of(request)
    user = org.user(user_id)
    assert user is not None
    access = state.tokens.issue_session(
        org_id=org.org_id,
        org_key=org.key,
        user_id=user.id,
        app_key=app.consumer_key,
        grant_id=grant_id,
        scopes=scopes,
        now=state.now(),
        flow=flow,
    )
    payload = token_payload(
        request, org=org, user=user, app=app, access=access, refresh=refresh, scopes=scopes
    )
    return token_response(payload)


async def authorization_code(request: web.Request, form: Form) -> web.Response:
    state = state_of(request)
    app = lookup_client(request, form.get("client_id"))
    if app is None:
        return oauth_error("invalid_client_id", "client identifier invalid")
    if (app.secret_required or form.get("client_secret")) and not _secret_ok(app, form.get("client_secret")):
        return oauth_error("invalid_client", "invalid client credentials")
    code = state.tokens.take_code(form.get("code", ""))
    if code is None or code.app_key != app.consumer_key:
        return oauth_error("invalid_grant", "invalid authorization code")
    org = state.org(code.org_key)
    if org is None:
        return oauth_error("invalid_grant", "invalid authorization code")
    # An injected 5xx means no exchange happened: the code must still work when the client retries.
    if (blocked := await _gate(request, org)) is not None:
        return blocked
    if code.used:
        # A replayed code revokes what it was exchanged for.
        if code.grant_id:
            state.tokens.revoke_grant(code.grant_id)
        return oauth_error("invalid_grant", "invalid authorization code")
    code.used = True
    if state.now() > code.expires_at:
        return oauth_error("invalid_grant", "expired authorization code")
    if form.get("redirect_uri") != code.redirect_uri:
        return oauth_error("redirect_uri_mismatch", "redirect_uri must match configuration")
    if code.challenge is not None:
        verifier = form.get("code_verifier")
        if not verifier:
            return oauth_error("invalid_grant", "invalid code verifier")
        if not hmac.compare_digest(s256(verifier), code.challenge):
            return oauth_error("invalid_request", "invalid code verifier")
    user = org.user(code.user_id)
    if user is None or not user.is_active:
        return oauth_error("invalid_grant", "inactive user")
    grant, refresh = state.tokens.approve(
        org_key=org.key,
        user_id=user.id,
        app_key=app.consumer_key,
        scopes=code.scopes,
        now=state.now(),
        with_refresh=bool(REFRESH_VALUES & set(code.scopes)),
    )
    code.grant_id = grant.id
    return _issue(
        request,
        org=org,
        user_id=user.id,
        app=app,
        scopes=code.scopes,
        flow="authorization_code",
        grant_id=grant.id,
        refresh=refresh,
    )


async def refresh_token(request: web.Request, form: Form) -> web.Response:
    state = state_of(request)
    app = lookup_client(request, form.get("client_id"))
    if app is None:
        return oauth_error("invalid_client_id", "client identifier invalid")
    if (app.refresh_secret_required or form.get("client_secret")) and not _secret_ok(
        app, form.get("client_secret")
    ):
        return oauth_error("invalid_client", "invalid client credentials")
    found, grant = state.tokens.find_refresh(form.get("refresh_token", ""))
    if grant is None or grant.app_key != app.consumer_key:
        return oauth_error("invalid_grant", "expired access/refresh token")
    if found == "replayed":
        # Refresh token rotation: a retired token coming back means it leaked; the grant dies.
        state.tokens.revoke_grant(grant.id)
        return oauth_error("invalid_grant", "expired access/refresh token")
    org = state.org(grant.org_key)
    if org is None:
        return oauth_error("invalid_grant", "expired access/refresh token")
    if (blocked := await _gate(request, org)) is not None:
        return blocked
    user = org.user(grant.user_id)
    if user is None or not user.is_active:
        return oauth_error("invalid_grant", "inactive user")
    new_refresh = state.tokens.rotate(grant) if app.rotation else None
    return _issue(
        request,
        org=org,
        user_id=user.id,
        app=app,
        scopes=grant.scopes,
        flow="refresh_token",
        grant_id=grant.id,
        refresh=new_refresh,
    )


def _public_key(certificate: str) -> Any:
    text = certificate.strip()
    if "BEGIN CERTIFICATE" in text:
        return x509.load_pem_x509_certificate(text.encode()).public_key()
    return x509.load_der_x509_certificate(base64.b64decode("".join(text.split()))).public_key()


def _non_refresh_scopes(app: OAuthApp) -> list[str]:
    return [s for s in allowed_scopes(app) if s not in REFRESH_VALUES]


async def jwt_bearer(request: web.Request, form: Form) -> web.Response:
    state = state_of(request)
    assertion = form.get("assertion", "")
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return oauth_error("invalid_grant", "invalid assertion")
    if header.get("alg") != "RS256" or not isinstance(claims, dict):
        return oauth_error("invalid_grant", "invalid assertion")
    app = lookup_client(request, str(claims.get("iss", "")))
    if app is None or app.org_key is None:
        return oauth_error("invalid_client_id", "client identifier invalid")
    org = state.org(app.org_key)
    if org is None:
        return oauth_error("invalid_client_id", "client identifier invalid")
    if (blocked := await _gate(request, org)) is not None:
        return blocked
    if not app.certificate:
        return oauth_error("invalid_grant", "invalid assertion")
    try:
        jwt.decode(
            assertion,
            key=_public_key(app.certificate),
            algorithms=["RS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        return oauth_error("invalid_grant", "invalid assertion")
    audiences = {a.rstrip("/") for a in [*org.login_audiences, base_url(request), instance_url(request, org)]}
    aud = claims.get("aud")
    given = aud if isinstance(aud, list) else [aud]
    if not any(isinstance(a, str) and a.rstrip("/") in audiences for a in given):
        return oauth_error("invalid_grant", "audience is invalid")
    exp, now = claims.get("exp"), state.now()
    if not isinstance(exp, int | float) or exp <= now or exp > now + MAX_JWT_LIFETIME + JWT_SKEW:
        return oauth_error("invalid_grant", "invalid assertion")
    user = org.user_by_username(str(claims.get("sub", "")))
    if user is None:
        return oauth_error("invalid_grant", "user hasn't approved this consumer")
    if not user.is_active:
        return oauth_error("invalid_grant", "inactive user")
    if app.admin_approved:
        if user.preauthorization == "token_refused" or not org.is_preauthorized(user, app):
            return oauth_error("invalid_app_access", "user is not admin approved to access this app")
    elif not any(
        g.user_id == user.id and g.app_key == app.consumer_key for g in state.tokens.grants.values()
    ):
        return oauth_error("invalid_grant", "user hasn't approved this consumer")
    scopes = _non_refresh_scopes(app)
    if not scopes:
        # "Salesforce issues a new access token only when the original access token includes at least one
        # standard scope other than the refresh_token scope."
        return oauth_error("invalid_grant", NO_STANDARD_SCOPE)
    return _issue(request, org=org, user_id=user.id, app=app, scopes=scopes, flow="jwt_bearer")


async def client_credentials(request: web.Request, form: Form) -> web.Response:
    state = state_of(request)
    org = path_org(request)
    if org is None:
        return oauth_error("invalid_grant", "request not supported on this domain")
    app = lookup_client(request, form.get("client_id"))
    if app is None or app.org_key != org.key:
        return oauth_error("invalid_client_id", "client identifier invalid")
    if not _secret_ok(app, form.get("client_secret")):
        return oauth_error("invalid_client", "invalid client credentials")
    if (blocked := await _gate(request, org)) is not None:
        return blocked
    user = org.user_by_username(app.client_credentials_user or "")
    if not app.client_credentials_enabled or user is None:
        return oauth_error("invalid_grant", "no client credentials user enabled")
    if not user.is_active:
        return oauth_error("invalid_grant", "inactive user")
    if not user.api_only:
        return oauth_error("invalid_grant", NOT_API_ONLY)
    del state  # only the org and app matter from here
    return _issue(
        request, org=org, user_id=user.id, app=app, scopes=_non_refresh_scopes(app), flow="client_credentials"
    )


GRANTS: dict[str, Callable[[web.Request, Form], Awaitable[web.Response]]] = {
    "authorization_code": authorization_code,
    "refresh_token": refresh_token,
    JWT_BEARER: jwt_bearer,
    "client_credentials": client_credentials,
}
