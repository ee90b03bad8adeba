"""The ``/__sim`` admin API (no auth; tests and demos only). Shows counts, never token or secret values."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .common import json_body, state_of
from .model import BuilderAppConfig, Knobs, OrgConfig, Preauthorization, UserConfig
from .state import Org, RecordError, SimState


def org_public(state: SimState, org: Org) -> dict[str, Any]:
    ps_names = {p.id: p.name for p in org.permission_sets.values()}
    usernames = {u.id: u.username for u in org.users.values()}
    return {
        "key": org.key,
        "name": org.name,
        "org_id": org.org_id,
        "sandbox": org.sandbox,
        "instance_path": f"/org/{org.key}",
        "login_audiences": list(org.login_audiences),
        "knobs": org.knobs.model_dump(),
        "users": [u.public() for u in org.users.values()],
        "permission_sets": [p.public() for p in org.permission_sets.values()],
        "assignments": [
            {
                **a.public(),
                "Username": usernames.get(a.assignee_id),
                "PermissionSetName": ps_names.get(a.permission_set_id),
            }
            for a in org.assignments.values()
        ],
        "apps": [a.public() for a in org.apps.values()],
        "metadata": {t: sorted(records) for t, records in org.metadata.items() if records},
        "deploys": len(org.deploys),
        "tokens": state.tokens.stats(org.key),
    }


def state_public(state: SimState) -> dict[str, Any]:
    approvals = []
    for g in state.tokens.grants.values():
        org = state.org(g.org_key)
        user = org.user(g.user_id) if org else None
        approvals.append(
            {
                "org": g.org_key,
                "user_id": g.user_id,
                "username": user.username if user else None,
                "client_id": g.app_key,
                "scopes": g.scopes,
                "created_at": g.created_at,
                "has_refresh_token": g.refresh_digest is not None,
            }
        )
    builder = state.builder_app.public()
    return {
        "auto_approve": state.auto_approve,
        "code_lifetime_seconds": state.code_lifetime,
        "clock_offset_seconds": state.clock_offset,
        "now": state.now(),
        "builder_app": builder,
        "orgs": {k: org_public(state, o) for k, o in state.orgs.items()},
        "approvals": approvals,
        "tokens": {"issued": dict(state.tokens.issued), **state.tokens.stats()},
    }


def _bad(message: str, status: int = 400) -> web.Response:
    return json_body({"error": message}, status=status)


def _org(request: web.Request) -> Org:
    org = state_of(request).org(request.match_info["org_key"])
    if org is None:
        raise web.HTTPNotFound(text='{"error": "unknown org"}', content_type="application/json")
    return org


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json() if request.can_read_body else {}
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "body must be JSON"}', content_type="application/json"
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text='{"error": "body must be a JSON object"}', content_type="application/json"
        )
    return data


async def get_state(request: web.Request) -> web.Response:
    return json_body(state_public(state_of(request)))


async def reset(request: web.Request) -> web.Response:
    state = state_of(request)
    state.reset()
    return json_body(state_public(state))


class ClockChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    advance_seconds: float = Field(ge=0, le=100 * 365 * 86400, allow_inf_nan=False)  # datetimes overflow


async def clock(request: web.Request) -> web.Response:
    try:
        change = ClockChange.model_validate(await _json(request))
    except ValidationError as exc:
        return _bad(str(exc.errors(include_url=False)))
    state = state_of(request)
    state.advance(change.advance_seconds)
    return json_body({"clock_offset_seconds": state.clock_offset, "now": state.now()})


class SettingsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    auto_approve: bool | None = None
    code_lifetime_seconds: float | None = Field(default=None, gt=0)


async def patch_settings(request: web.Request) -> web.Response:
    try:
        change = SettingsChange.model_validate(await _json(request))
    except ValidationError as exc:
        return _bad(str(exc.errors(include_url=False)))
    state = state_of(request)
    if change.auto_approve is not None:
        state.auto_approve = change.auto_approve
    if change.code_lifetime_seconds is not None:
        state.code_lifetime = change.code_lifetime_seconds
    return json_body({"auto_approve": state.auto_approve, "code_lifetime_seconds": state.code_lifetime})


async def patch_builder_app(request: web.Request) -> web.Response:
    """Change the Builder's client app (rotation, PKCE, callback URLs, secret...)."""
    state = state_of(request)
    app = state.builder_app
    data = await _json(request)
    current = BuilderAppConfig(
        client_id=app.consumer_key,
        client_secret=app.consumer_secret,
        callback_urls=app.callback_urls,
        scopes=app.scopes,
        refresh_token_rotation=app.rotation,
        pkce_required=app.pkce_required,
        secret_required=app.secret_required,
        label=app.label,
    )
    try:
        new = BuilderAppConfig.model_validate({**current.model_dump(), **data})
    except ValidationError as exc:
        return _bad(str(exc.errors(include_url=False, include_input=False)))
    app.consumer_key, app.consumer_secret = new.client_id, new.client_secret
    app.callback_urls, app.scopes, app.label = list(new.callback_urls), list(new.scopes), new.label
    app.rotation, app.pkce_required = new.refresh_token_rotation, new.pkce_required
    app.secret_required = app.refresh_secret_required = new.secret_required
    return json_body(app.public())


async def add_org(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        org = state.add_org(OrgConfig.model_validate(await _json(request)))
    except ValidationError as exc:
        return _bad(str(exc.errors(include_url=False)))
    except RecordError as exc:
        return _bad(exc.message, 409)
    return json_body(org_public(state, org), status=201)


async def get_org(request: web.Request) -> web.Response:
    return json_body(org_public(state_of(request), _org(request)))


async def patch_org(request: web.Request) -> web.Response:
    """Change knobs: latency_ms, propagation_delay_seconds, session_timeout_seconds, error_rate_5xx, ..."""
    org = _org(request)
    data = await _json(request)
    try:
        org.knobs = Knobs.model_validate({**org.knobs.model_dump(), **data})
    except ValidationError as exc:
        return _bad(str(exc.errors(include_url=False)))
    return json_body(org_public(state_of(request), org))


async def expire_sessions(request: web.Request) -> web.Response:
    org = _org(request)
    count = state_of(request).tokens.drop_sessions(org_key=org.key)
    return json_body({"expired_sessions": count})


async def list_apps(request: web.Request) -> web.Response:
    org = _org(request)
    return json_body({"apps": [a.public() for a in org.apps.values()], "count": len(org.apps)})


async def revoke_grants(request: web.Request) -> web.Response:
    """Revoke every approval (refresh token) the org's users gave the Builder's client app."""
    state = state_of(request)
    org = _org(request)
    count = state.tokens.revoke_where(org_key=org.key, app_key=state.builder_app.consumer_key)
    return json_body({"revoked_grants": count})


async def add_user(request: web.Request) -> web.Response:
    state = state_of(request)
    org = _org(request)
    try:
        user = state.add_user(org, UserConfig.model_validate(await _json(request)))
    except ValidationError as exc:
        return _bad(str(exc.errors(include_url=False)))
    except RecordError as exc:
        return _bad(exc.message, 409)
    return json_body(user.public(), status=201)


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: bool | None = None
    profile: str | None = None
    preauthorization: Preauthorization | None = None


async def patch_user(request: web.Request) -> web.Response:
    state = state_of(request)
    org = _org(request)
    user = org.user_by_username(request.match_info["username"])
    if user is None:
        return _bad("unknown user", 404)
    try:
        change = UserChange.model_validate(await _json(request))
    except ValidationError as exc:
        return _bad(str(exc.errors(include_url=False)))
    if change.active is not None:
        user.is_active = change.active
        if not change.active:
            state.tokens.drop_user(user.id)
    if change.profile is not None:
        user.profile = change.profile
    if change.preauthorization is not None:  # applies to later assignments and grants only
        user.preauthorization = change.preauthorization
    return json_body(user.public())


async def add_connected_app(request: web.Request) -> web.Response:
    """Install a pre-existing ConnectedApp (JSON in Metadata API field names); the Spring '26 block does not apply."""
    state = state_of(request)
    org = _org(request)
    try:
        app = state.add_connected_app(org, await _json(request))
    except RecordError as exc:
        return json_body(
            {"error": exc.message, "statusCode": exc.status_code, "fields": exc.fields}, status=400
        )
    return json_body(app.public(), status=201)


def setup_admin_routes(app: web.Application) -> None:
    app.router.add_get("/__sim/state", get_state)
    app.router.add_post("/__sim/reset", reset)
    app.router.add_post("/__sim/clock", clock)
    app.router.add_patch("/__sim/settings", patch_settings)
    app.router.add_patch("/__sim/builder-app", patch_builder_app)
    app.router.add_post("/__sim/orgs", add_org)
    app.router.add_get("/__sim/orgs/{org_key}", get_org)
    app.router.add_patch("/__sim/orgs/{org_key}", patch_org)
    app.router.add_post("/__sim/orgs/{org_key}/expire-sessions", expire_sessions)
    app.router.add_get("/__sim/orgs/{org_key}/apps", list_apps)
    app.router.add_post("/__sim/orgs/{org_key}/connected-apps", add_connected_app)
    app.router.add_post("/__sim/orgs/{org_key}/revoke-grants", revoke_grants)
    app.router.add_post("/__sim/orgs/{org_key}/users", add_user)
    app.router.add_patch("/__sim/orgs/{org_key}/users/{username}", patch_user)
