"""HTTP views: parse, call one use case, map the result. Errors are left to the error middleware."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from datetime import timedelta
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from pydantic import BaseModel, ValidationError

from manager.apikeys import authorize_token_read
from manager.domain import CONNECTION_ID_SHAPE, Connection
from manager.http.problems import (
    InvalidBody,
    InvalidJson,
    InvalidParameter,
    NotReady,
    PayloadTooLarge,
    RequestValidationFailed,
    UnsupportedMediaType,
)
from manager.http.schemas import (
    SLUG,
    AssociateIntegrationRequest,
    ConnectionOut,
    ConnectionPage,
    CreateConnectionRequest,
    Health,
    IntegrationOut,
    ListConnectionsQuery,
    TokenOut,
    TokenQuery,
)
from manager.http.state import COMPONENTS, METRICS, PRINCIPAL, REQUEST_ID
from manager.idempotency import StoredResponse, fingerprint, run_once, scoped_key
from manager.services import NewConnection

M = TypeVar("M", bound=BaseModel)
MAX_BODY_BYTES = 64 * 1024
"""The largest request body the API reads (the application's ``client_max_size`` too)."""
BODY_READ_SECONDS = 10.0
"""How long a body may take to arrive in full: one shorter than its Content-Length, or one the HTTP
parser gave up on (not chunked as its Transfer-Encoding says), never completes otherwise."""
IDEMPOTENCY_STALE_AFTER = timedelta(seconds=60)
_SLUG_RE = re.compile(SLUG)


def _json(model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status, headers=headers)


async def read_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated against ``model`` (415 / 400 / 413 / 422 on bad input).

    Bodies are small JSON documents: one with a ``Content-Encoding`` other than ``identity`` is refused
    (415) without being read, one declared larger than :data:`MAX_BODY_BYTES` too (413), and a body that
    does not match its framing (``Content-Length``, ``Transfer-Encoding``) is a 400 ``invalid_body``, not
    a 500, at the latest after :data:`BODY_READ_SECONDS`.
    """
    if request.content_type != "application/json":
        raise UnsupportedMediaType("the request body must be application/json")
    headers = request.headers.getall("Content-Encoding", [])
    if {part.strip().lower() for value in headers for part in value.split(",")} - {"", "identity"}:
        raise UnsupportedMediaType(
            "the Content-Encoding header must be absent or identity: send the JSON body uncompressed"
        )
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is over {MAX_BODY_BYTES // 1024} KiB (Content-Length)")
    try:
        async with asyncio.timeout(BODY_READ_SECONDS):
            raw = await request.read()
    except (RequestPayloadError, HttpProcessingError, TimeoutError):
        raise InvalidBody(
            f"the request body could not be read in full within {BODY_READ_SECONDS:g} s: it does not match "
            "its Content-Length or Transfer-Encoding"
        ) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidJson("the request body is not valid UTF-8 JSON") from None
    except RecursionError:  # deeply nested arrays/objects: the decoder gives up, so do we (not a 500)
        raise InvalidJson("the request body nests too deeply") from None
    except ValueError:  # an integer of more than 4300 digits (int's conversion limit), not a 500
        raise InvalidJson("the request body holds a number too long to read") from None
    if not isinstance(data, dict):
        raise InvalidJson("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationFailed("request body", exc) from None


def read_query(request: web.Request, model: type[M]) -> M:
    """The query validated against ``model``; a parameter given twice arrives as a list (422 unless the
    field takes several values), never silently as its first value."""
    data: dict[str, str | list[str]] = {}
    for name in request.query:
        values = request.query.getall(name)
        data[name] = values[0] if len(values) == 1 else values
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationFailed("query", exc) from None


def connection_id_of(request: web.Request) -> str:
    value = request.match_info["connection_id"]
    if not CONNECTION_ID_SHAPE.fullmatch(value):
        raise InvalidParameter("the connection id has an invalid shape (con_ and 22 lower-case hex digits)")
    return value


def integration_name_of(request: web.Request) -> str:
    value = request.match_info["name"]
    if not _SLUG_RE.fullmatch(value):
        raise InvalidParameter("the integration name must be a slug (lower-case letters, digits, '-')")
    return value


def _encode_cursor(last_id: str | None) -> str | None:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=") if last_id else None


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidParameter("the cursor is not one this API gave out") from None
    if not CONNECTION_ID_SHAPE.fullmatch(value):
        raise InvalidParameter("the cursor is not one this API gave out")
    return value


async def create_connection(request: web.Request) -> web.Response:
    """POST /v1/connections → 202 with the pending connection (Idempotency-Key honoured)."""
    c = request.app[COMPONENTS]
    body = await read_body(request, CreateConnectionRequest)
    new = NewConnection(
        name=body.name,
        org_id=body.org_id,
        salesforce_username=body.salesforce_username,
        admin_email=str(body.admin_email),
        label=body.label or body.name,
        app_kind=body.app_kind.value,
    )

    ran = False
    key = request.headers.get("Idempotency-Key")
    ref = scoped_key(request[PRINCIPAL].id, key) if key is not None else None
    body_fingerprint = fingerprint(body.model_dump(mode="json")) if ref is not None else None

    def accepted(conn: Connection) -> StoredResponse:
        return StoredResponse(202, ConnectionOut.of(conn).model_dump(mode="json"))

    async def action() -> StoredResponse:
        nonlocal ran
        ran = True
        conn = await c.connections.create(
            new, request_id=request[REQUEST_ID], idempotency_ref=ref, idempotency_fingerprint=body_fingerprint
        )
        return accepted(conn)

    async def recover() -> StoredResponse | None:
        """A request with this key that died after recording its connection: answer with that one
        (422 ``idempotency_key_reused`` when that request had another body)."""
        assert ref is not None and body_fingerprint is not None
        conn = await c.connections.created_under(ref, fingerprint=body_fingerprint, new=new)
        return accepted(conn) if conn else None

    if ref is None or body_fingerprint is None:
        response = await action()
    else:
        response = await run_once(
            c.idempotency,
            ref,
            body_fingerprint=body_fingerprint,
            now=c.connections.clock(),
            stale_after=IDEMPOTENCY_STALE_AFTER,
            action=action,
            recover=recover,
        )
    headers = {"Location": f"/v1/connections/{response.body['id']}"}
    if not ran:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(response.body, status=response.status, headers=headers)


async def list_connections(request: web.Request) -> web.Response:
    """GET /v1/connections?limit=&cursor=&status= → one page in creation order (of those states)."""
    c = request.app[COMPONENTS]
    query = read_query(request, ListConnectionsQuery)
    statuses = frozenset(query.status) if query.status is not None else None
    items, last = await c.connections.page(
        limit=query.limit, after=_decode_cursor(query.cursor), statuses=statuses
    )
    return _json(ConnectionPage(items=[ConnectionOut.of(i) for i in items], next_cursor=_encode_cursor(last)))


async def get_connection(request: web.Request) -> web.Response:
    """GET /v1/connections/{id}."""
    conn = await request.app[COMPONENTS].connections.get(connection_id_of(request))
    return _json(ConnectionOut.of(conn))


async def delete_connection(request: web.Request) -> web.Response:
    """DELETE /v1/connections/{id} → 202 (deleting; deleted once the Builder confirms)."""
    conn = await request.app[COMPONENTS].connections.delete(
        connection_id_of(request), request_id=request[REQUEST_ID]
    )
    return _json(ConnectionOut.of(conn), status=202)


async def associate_integration(request: web.Request) -> web.Response:
    """PUT /v1/integrations/{name}/connection."""
    name = integration_name_of(request)
    body = await read_body(request, AssociateIntegrationRequest)
    integration = await request.app[COMPONENTS].connections.associate(name, body.connection_id)
    return _json(IntegrationOut.of(integration))


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def connection_token(request: web.Request) -> web.Response:
    """GET /v1/connections/{id}/token[?force_refresh=true]."""
    query = read_query(request, TokenQuery)
    connection_id = connection_id_of(request)
    authorize_token_read(request[PRINCIPAL], connection_id=connection_id)
    token = await request.app[COMPONENTS].tokens.for_connection(
        connection_id, force_refresh=query.force_refresh, request_id=request[REQUEST_ID]
    )
    return _json(TokenOut.of(token), headers=_NO_STORE)


async def integration_token(request: web.Request) -> web.Response:
    """GET /v1/integrations/{name}/token[?force_refresh=true]."""
    query = read_query(request, TokenQuery)
    name = integration_name_of(request)
    authorize_token_read(request[PRINCIPAL], integration=name)
    token = await request.app[COMPONENTS].tokens.for_integration(
        name, force_refresh=query.force_refresh, request_id=request[REQUEST_ID]
    )
    return _json(TokenOut.of(token), headers=_NO_STORE)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return _json(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the broker and the database both answer (503 otherwise)."""
    checks: dict[str, Any] = {}
    for name, check in request.app[COMPONENTS].checks.items():
        try:
            checks[name] = "up" if await check() else "down"
        except Exception:
            checks[name] = "down"
    if any(v != "up" for v in checks.values()):
        raise NotReady(checks)
    return _json(Health(status="ready", checks=checks))


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    body, content_type = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API."""
    from manager.http.openapi import openapi_document

    return web.json_response(openapi_document())
