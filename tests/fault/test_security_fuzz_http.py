"""Property-based fuzzing of the Manager's and the Builder's HTTP APIs from their served OpenAPI documents
(schemathesis: valid and invalid inputs, with full credentials): never a 5xx, never a crash.

Example counts are bounded (``SFCONNECT_FUZZ_EXAMPLES``, default 100 per operation, mode and pass) and the
examples are the same on every run, so CI is stable and takes well under a minute per API; a deeper run
with fresh examples: ``SFCONNECT_FUZZ_EXAMPLES=1000 SFCONNECT_FUZZ_RANDOM=1`` (see docs/RELIABILITY.md).
Each API is fuzzed twice: with generated path parameters, and with the ids of real objects (an active
connection, its integration, the authorized org) so deeper code runs too.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.fault.harness import ALL_SCOPES, Api, FaultStack, eventually, start_fault_stack, write_figures
from tests.fault.secrets_scan import scan

pytestmark = pytest.mark.fault

FUZZ_EXAMPLES = int(os.environ.get("SFCONNECT_FUZZ_EXAMPLES", "100"))  # test-only knobs
FUZZ_RANDOM = os.environ.get("SFCONNECT_FUZZ_RANDOM", "") == "1"  # new examples each run (default: fixed)
SEEN: dict[str, Counter[str]] = {"manager": Counter(), "builder": Counter()}
KNOWN: dict[str, str] = {}  # path parameters of real objects: a second pass fuzzes them


@pytest.fixture(scope="module")
def fuzz_stack(amqp_url: str) -> Iterator[FaultStack]:
    """One stack for the module: an authorized org and a full-scope Manager key."""
    stack = start_fault_stack(amqp_url)
    stack.create_api_key("fuzz", *ALL_SCOPES)

    async def prepare() -> None:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            api = Api(stack, http, api_key=stack.api_keys[0])
            org_id = await api.authorize()
            status, conn = await api.create(org_id, "fuzz-target")
            assert status == 202, conn

            async def active() -> bool:
                return (await api.connection(conn["id"]))[1]["status"] == "active"

            await eventually(active, deadline_s=60, what="the fuzz target connection is active")
            async with http.put(
                f"{api.manager()}/v1/integrations/fuzz/connection",
                json={"connection_id": conn["id"]},
                headers=api.auth,
            ) as r:
                assert r.status in (200, 201), await r.text()
            KNOWN.update(connection_id=conn["id"], name="fuzz", org_id=org_id)

    try:
        asyncio.run(prepare())
        yield stack
        alive = {n: stack.procs[n].alive() for n in stack.services()}
        stack.stop_services()
        report = asyncio.run(scan(stack))
        for service, counts in SEEN.items():
            write_figures(
                f"fuzz-{service}",
                {"requests": sum(counts.values()), "statuses": dict(sorted(counts.items())), "alive": alive},
            )
        assert all(alive.values()), f"a service died under fuzzing: {alive}"
        assert not report.hits, report.figures()["hit_places"]
    finally:
        stack.stop()
        asyncio.run(_drop(stack))
        stack.cleanup()


async def _drop(stack: FaultStack) -> None:
    from tests.fault.conftest import _drop_topology

    await _drop_topology(stack)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    *,
    path_parameters: dict[str, str] | None,
    base_url: str,
    auth: dict[str, str],
    session: requests.Session,
    seen: Counter[str],
) -> None:
    """Run ``FUZZ_EXAMPLES`` generated cases against one operation; any 5xx fails with a curl reproducer."""

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def run(case: Any) -> None:
        # Generated credentials would only test the auth middleware (test_security_access does that).
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in CREDENTIAL_HEADERS}
        response = case.call(
            base_url=base_url, session=session, headers=auth, timeout=30, allow_redirects=False
        )
        seen[str(response.status_code)] += 1
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}\n"
            f"reproduce: {case.as_curl_command(headers=auth)}"
        )

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (an operation without parameters or body): nothing to fuzz in this mode.
        assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid input can be generated"


CREDENTIAL_HEADERS = ("authorization", "x-api-key")
FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=not FUZZ_RANDOM,
)


@pytest.mark.parametrize("target", ["generated ids", "real objects"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("service", ["manager", "builder"])
def test_generated_requests_from_the_served_openapi_document_never_get_a_5xx(
    service: str, mode: GenerationMode, target: str, fuzz_stack: FaultStack, session: requests.Session
) -> None:
    base_url = fuzz_stack.url(service)
    schema = schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json")
    key = fuzz_stack.api_keys[0] if service == "manager" else fuzz_stack.admin_api_key
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 7
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        if target == "real objects" and not names:
            continue  # already fuzzed in the generated-ids pass
        _fuzz_operation(
            operation,
            mode,
            path_parameters={n: KNOWN[n] for n in names} if target == "real objects" else None,
            base_url=base_url,
            auth={"Authorization": f"Bearer {key}"},
            session=session,
            seen=SEEN[service],
        )
