"""Requests generated from the OpenAPI document (valid and invalid) never get a server error: every
refusal is a 4xx problem document. Schemathesis drives the real app over a socket; ports are fakes."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from manager.http.state import METRICS

from tests.unit.manager_http_harness import auth, harness

pytestmark = pytest.mark.unit

EXAMPLES = 15


def _check_operation(operation: Any, mode: Any, base_url: str, key: str, problems: list[str]) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        headers = {**(case.headers or {}), **auth(key)}
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        where = f"{mode.value} {operation.method.upper()} {operation.path} -> {response.status_code}"
        if response.status_code >= 500:
            problems.append(where)
        elif response.status_code >= 400:
            content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])
            if "application/problem+json" not in str(content_type):
                problems.append(where + " without a problem document")

    check()


def _fuzz(doc: dict[str, Any], base_url: str, key: str) -> list[str]:
    problems: list[str] = []
    schema = schemathesis.openapi.from_dict(doc)
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/metrics":
            continue
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                _check_operation(operation, mode, base_url, key, problems)
            except hypothesis.errors.Unsatisfiable:
                # nothing to make invalid (no parameters, no body): only positive cases exist
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.path
                assert not operation.body and not operation.query, operation.path
    return problems


async def test_generated_requests_never_get_a_server_error_and_refusals_are_problem_documents() -> None:
    async with harness() as h:
        key = await h.key()
        doc = await (await h.client.get("/v1/openapi.json")).json()
        base_url = str(h.client.make_url("")).rstrip("/")
        problems = await asyncio.to_thread(_fuzz, doc, base_url, key)
        served = sum(
            sample.value
            for metric in h.app[METRICS].registry.collect()
            if metric.name == "sfconnect_manager_http_requests"
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    assert problems == []
    assert served >= 10 * EXAMPLES  # the generated requests really reached the app
