"""docs/api.md stays true to the APIs it describes.

The Manager part is checked against the OpenAPI document the Manager serves (fetched from the real app,
as tests/unit/test_manager_auth_and_openapi.py does); the Builder part against the Builder's document
and the routes it serves.
Every operation must have its ``### `METHOD /path``` section naming its scope, query parameters and
status codes, and every ``METHOD /path`` the doc mentions must be an operation of that API.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from builder.http.openapi import openapi_document as builder_openapi_document
from builder.http.routes import setup_routes as setup_builder_routes

from tests.unit.manager_http_harness import harness

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
BUILDER_HEADING = "\n## Builder admin API"
_MENTION = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/[^\s`?#)\]|,;]*)")
_HEADING = re.compile(r"^### `(GET|POST|PUT|PATCH|DELETE) (/\S*)`", re.MULTILINE)


def _parts() -> tuple[str, str]:
    """The Manager part and the Builder part of the doc."""
    text = DOC.read_text()
    assert BUILDER_HEADING in text, f"docs/api.md has no '{BUILDER_HEADING.strip()}' section"
    manager, builder = text.split(BUILDER_HEADING, 1)
    return manager, builder


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def _mentions(text: str) -> set[tuple[str, str]]:
    return {(method, path.rstrip(".:")) for method, path in _MENTION.findall(text)}


def _template(path: str) -> re.Pattern[str]:
    """A documented path as a pattern: ``{param}`` (in the doc or the API) stands for one segment."""
    return re.compile("^" + re.sub(r"\\{[^}]*\\}", "[^/]+", re.escape(path)) + "$")


def _exists(mention: tuple[str, str], operations: set[tuple[str, str]]) -> bool:
    method, path = mention
    mentioned = _template(path)
    return any(
        method == m and (_template(p).fullmatch(path) or mentioned.fullmatch(p)) for m, p in operations
    )


def _sections(text: str) -> dict[tuple[str, str], str]:
    """``### `METHOD /path``` heading → the text up to the next heading of level 2 or 3."""
    found: dict[tuple[str, str], str] = {}
    starts = list(_HEADING.finditer(text))
    for match in starts:
        rest = text[match.end() :]
        end = re.search(r"^#{2,3} ", rest, re.MULTILINE)
        found[(match.group(1), match.group(2))] = rest[: end.start() if end else len(rest)]
    return found


async def _manager_openapi() -> dict[str, Any]:
    async with harness() as h:
        response = await h.client.get("/v1/openapi.json")
        assert response.status == 200
        doc: dict[str, Any] = await response.json()
    return doc


async def test_every_manager_operation_is_documented_and_every_documented_one_exists() -> None:
    manager_text, _ = _parts()
    operations = _operations(await _manager_openapi())
    assert ("PUT", "/v1/integrations/{name}/connection") in operations
    mentioned = _mentions(manager_text)
    missing = sorted(operations - mentioned)
    assert not missing, f"docs/api.md does not mention these operations as 'METHOD /path': {missing}"
    unknown = sorted(m for m in mentioned if not _exists(m, operations))
    assert not unknown, f"docs/api.md mentions Manager routes the OpenAPI document lacks: {unknown}"


async def test_each_manager_section_names_its_scope_query_parameters_and_statuses() -> None:
    manager_text, _ = _parts()
    doc = await _manager_openapi()
    sections = _sections(manager_text)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert (method.upper(), path) in sections, f"no '### `{where}`' section in docs/api.md"
            section = sections[(method.upper(), path)]
            for scheme in op.get("security", []):
                for scope in scheme.values():
                    for name in scope:
                        assert f"`{name}`" in section, f"{where}: the section does not name scope {name}"
            for param in op.get("parameters", []):
                if param["in"] in ("query", "header"):
                    assert param["name"] in section, f"{where}: parameter {param['name']} not documented"
            for status in op["responses"]:
                assert re.search(rf"\b{status}\b", section), f"{where}: status {status} not documented"


def _builder_routes() -> set[tuple[str, str]]:
    """What the Builder serves (its OpenAPI document does not list /v1/openapi.json itself)."""
    app = web.Application()
    setup_builder_routes(app)
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def test_every_builder_operation_is_documented_and_every_documented_one_exists() -> None:
    _, builder_text = _parts()
    operations = _operations(builder_openapi_document())
    served = _builder_routes()
    assert operations <= served
    mentioned = _mentions(builder_text)
    missing = sorted(served - mentioned)
    assert not missing, f"the Builder section does not mention these operations: {missing}"
    unknown = sorted(m for m in mentioned if not _exists(m, served))
    assert not unknown, f"the Builder section mentions routes the Builder lacks: {unknown}"


def test_the_doc_carries_no_real_looking_secret() -> None:
    text = DOC.read_text()
    assert not re.search(r"sfc_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", text), "a real-shaped API key"
    # Salesforce access tokens: org id, '!', then an opaque part; only placeholders like 00D...!AQ... belong
    tokens = re.findall(r"00D[A-Za-z0-9]{12,15}![A-Za-z0-9._-]{8,}", text)
    assert not tokens, f"{len(tokens)} real-looking access token(s) in docs/api.md"
