"""/readyz: every dependency is listed in ``checks``, up or down, in the 200 and in the 503 problem."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from builder.app import build_app
from builder.http import views
from builder.http.context import CONTEXT

from tests.unit.builder_fakes import make_settings

pytestmark = pytest.mark.unit


async def _readyz(app: web.Application) -> tuple[int, dict[str, object], web.Response]:
    response = await views.readyz(make_mocked_request("GET", "/readyz", app=app))
    assert isinstance(response, web.Response) and response.text is not None
    return response.status, json.loads(response.text), response


async def test_a_builder_not_started_yet_lists_every_dependency_as_down() -> None:
    status, body, response = await _readyz(build_app(make_settings()))
    assert status == 503 and response.content_type == "application/problem+json"
    assert body["code"] == "not_ready" and body["checks"] == {"database": "down", "broker": "down"}
    assert response.headers["Retry-After"] == "5"


async def test_without_a_consumer_only_the_database_is_checked() -> None:
    _, body, _ = await _readyz(build_app(make_settings(), consume=False))
    assert body["checks"] == {"database": "down"}


async def test_the_problem_names_the_dependency_that_is_down_and_the_200_lists_both_up() -> None:
    app = build_app(make_settings())

    async def up() -> None:
        return None

    async def down() -> None:
        raise ConnectionError("broker connection is down")

    app[CONTEXT].readiness.update(database=up, broker=down)
    status, body, _ = await _readyz(app)
    assert status == 503 and body["checks"] == {"database": "up", "broker": "down"}
    assert body["detail"] == "not ready: broker down (ConnectionError)"
    app[CONTEXT].readiness["broker"] = up
    status, body, _ = await _readyz(app)
    assert status == 200 and body == {"status": "ready", "checks": {"database": "up", "broker": "up"}}
