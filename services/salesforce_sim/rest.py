"""REST API: versions, describeGlobal, SOQL query, a few sObjects, limits, Connect REST credentials."""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime

from aiohttp import web

from .common import API_VERSIONS, AUTH, Auth, authenticate, bearer, json_body, rest_error, state_of
from .model import same_id
from .sobjects import OBJECTS, SCHEMA, describe_entry, rows
from .soql import SoqlError, parse, run
from .state import RecordError

NOT_FOUND = "The requested resource does not exist"


def release(version: str) -> str:
    """Release name of an API version: 31.0 was Summer '14, then three releases a year."""
    n = int(float(version)) - 31
    season = ("Summer", "Winter", "Spring")[n % 3]
    return f"{season} '{14 + (n + 2) // 3:02d}"


async def versions(request: web.Request) -> web.Response:
    return json_body(
        [{"label": release(v), "url": f"/services/data/v{v}", "version": v} for v in API_VERSIONS]
    )


def _version(request: web.Request) -> str:
    """The numeric API version of the path (``vNN.N``, or ``latest`` for the newest one)."""
    if request.match_info["version"] == "latest":
        return API_VERSIONS[-1]
    raw = request.match_info["version"].removeprefix("v")
    if raw not in API_VERSIONS:
        if raw.replace(".", "", 1).isdigit() and float(raw) < 31:
            raise web.HTTPGone(
                text=json.dumps(
                    [{"errorCode": "API_VERSION_RETIRED", "message": f"Version {raw} is retired"}]
                ),
                content_type="application/json",
            )
        raise web.HTTPNotFound(
            text=json.dumps([{"errorCode": "NOT_FOUND", "message": NOT_FOUND}]),
            content_type="application/json",
        )
    return raw


def require_auth(request: web.Request) -> Auth:
    """The caller's session, or a 401 INVALID_SESSION_ID."""
    auth = request.get(AUTH) or authenticate(request, bearer(request))
    if auth is None:
        raise web.HTTPUnauthorized(
            text=json.dumps([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
            content_type="application/json",
        )
    return auth


async def resources(request: web.Request) -> web.Response:
    v = _version(request)
    require_auth(request)
    names = ["sobjects", "query", "limits", "connect"]
    return json_body({n: f"/services/data/v{v}/{n}" for n in names})


async def describe_global(request: web.Request) -> web.Response:
    v = _version(request)
    auth = require_auth(request)
    since = request.headers.get("If-Modified-Since")
    if since:
        try:
            if parsedate_to_datetime(since).timestamp() >= int(auth.org.schema_changed_at):
                return web.Response(status=304)
        except (TypeError, ValueError):
            pass
    sobjects = [describe_entry(o, v) for o in OBJECTS]
    return json_body({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})


async def query(request: web.Request) -> web.Response:
    v = _version(request)
    auth = require_auth(request)
    text = request.query.get("q")
    if not text:
        return rest_error(400, "MALFORMED_QUERY", "A query string (q) is required")
    try:
        parsed = parse(text, SCHEMA)
    except SoqlError as exc:
        return rest_error(400, exc.code, exc.message)
    return json_body(
        run(
            parsed,
            rows(auth.org, parsed.sobject),
            lambda r: f"/services/data/v{v}/sobjects/{parsed.sobject}/{r['Id']}",
        )
    )


def _sobject(request: web.Request) -> str:
    name = request.match_info["sobject"]
    match = next((o for o in SCHEMA if o.lower() == name.lower()), None)
    if match is None:
        raise web.HTTPNotFound(
            text=json.dumps([{"errorCode": "NOT_FOUND", "message": NOT_FOUND}]),
            content_type="application/json",
        )
    return match


async def create_record(request: web.Request) -> web.Response:
    _version(request)
    auth = require_auth(request)
    sobject = _sobject(request)
    try:
        body = await request.json()
    except ValueError:
        return rest_error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
    if not isinstance(body, dict):
        return rest_error(400, "JSON_PARSER_ERROR", "Expected a JSON object")
    allowed = {
        "PermissionSet": {"Name", "Label", "Description"},
        "PermissionSetAssignment": {"AssigneeId", "PermissionSetId"},
    }
    if sobject not in allowed:
        return rest_error(400, "INVALID_TYPE_FOR_OPERATION", f"entity type cannot be inserted: {sobject}", [])
    body = {k: v for k, v in body.items() if k != "attributes"}
    unknown = [k for k in body if k not in allowed[sobject]]
    if unknown:
        return rest_error(
            400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobject}", []
        )
    state = state_of(request)
    try:
        if sobject == "PermissionSet":
            record_id = state.create_permission_set(
                auth.org,
                str(body.get("Name") or ""),
                str(body.get("Label") or ""),
                str(body.get("Description") or ""),
            ).id
        else:
            record_id = state.assign(
                auth.org, str(body.get("AssigneeId") or ""), str(body.get("PermissionSetId") or "")
            ).id
    except RecordError as exc:
        return rest_error(400, exc.status_code, exc.message, exc.fields)
    return json_body({"id": record_id, "success": True, "errors": []}, status=201)


async def get_record(request: web.Request) -> web.Response:
    v = _version(request)
    auth = require_auth(request)
    sobject = _sobject(request)
    record_id = request.match_info["id"]
    row = next((r for r in rows(auth.org, sobject) if same_id(r["Id"], record_id)), None)
    if row is None:
        return rest_error(404, "NOT_FOUND", NOT_FOUND)
    return json_body(
        {"attributes": {"type": sobject, "url": f"/services/data/v{v}/sobjects/{sobject}/{row['Id']}"}, **row}
    )


async def delete_record(request: web.Request) -> web.Response:
    _version(request)
    auth = require_auth(request)
    sobject = _sobject(request)
    state = state_of(request)
    try:
        if sobject == "PermissionSet":
            state.delete_permission_set(auth.org, request.match_info["id"])
        elif sobject == "PermissionSetAssignment":
            state.delete_assignment(auth.org, request.match_info["id"])
        else:
            return rest_error(
                400, "INVALID_TYPE_FOR_OPERATION", f"entity type cannot be deleted: {sobject}", []
            )
    except RecordError as exc:
        status = 404 if exc.status_code == "NOT_FOUND" else 400
        return rest_error(status, exc.status_code, exc.message)
    return web.Response(status=204)


async def limits(request: web.Request) -> web.Response:
    _version(request)
    auth = require_auth(request)
    knobs = auth.org.knobs
    limit = knobs.api_limit if knobs.api_limit is not None else 5_000_000
    return json_body(
        {"DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - knobs.api_requests_used)}}
    )


async def oauth_credentials(request: web.Request) -> web.Response:
    """Connect REST: an app's OAuth consumers, or one consumer's key and/or secret (part=...)."""
    v = _version(request)
    auth = require_auth(request)
    ident = request.match_info["app"]
    app = next(
        (a for a in auth.org.apps.values() if a.full_name == ident or same_id(a.record_id, ident)),
        None,
    )
    if app is None:
        return rest_error(404, "NOT_FOUND", NOT_FOUND)
    base = f"/services/data/v{v}/apps/oauth/credentials/{app.record_id}"
    consumer = request.match_info.get("consumer")
    if consumer is None:
        item = {
            "id": app.consumer_id,
            "key": app.consumer_key,
            "name": app.label or app.full_name,
            "url": f"{base}/{app.consumer_id}",
            "stagedCredentialsUrl": f"{base}/{app.consumer_id}/staged",
        }
        return json_body({"consumers": [item]})
    if not same_id(consumer, app.consumer_id):
        return rest_error(404, "NOT_FOUND", NOT_FOUND)
    part = request.query.get("part", "key")
    if part not in ("key", "secret", "keyandsecret"):
        return rest_error(400, "INVALID_INPUT", "part must be key, secret or keyandsecret")
    out: dict[str, str] = {}
    if part in ("key", "keyandsecret"):
        out["key"] = app.consumer_key
    if part in ("secret", "keyandsecret"):
        out["secret"] = app.consumer_secret
    return json_body(out)
