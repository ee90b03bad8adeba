"""``make demo`` itself: the command a new user runs first, as a process, from its own output; and how it
reports a failure (the step, the reason, never a secret) and an unclean shutdown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from devtools import demo_support
from devtools.demo import run_demo
from devtools.demo_support import Broker, DemoFailed, Progress, stop_rabbitmq, unclean_exits
from tests.e2e.test_e2e_stack import DEMO_STEPS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_command_runs_every_step_prints_a_summary_and_exits_0() -> None:
    # The demo works on the broker at 127.0.0.1:5672 (reused, or started when installed), as `make demo`.
    out = subprocess.run(
        [sys.executable, "-m", "devtools.demo"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    summary = text.split("== summary", 1)[1]
    for step in DEMO_STEPS:
        assert step in summary, (step, summary)
    assert "[FAILED]" not in text and "Traceback" not in text
    assert "== shutting down" in text and "logs kept in" not in text  # the work folder is removed
    assert text.rstrip().splitlines()[-1].startswith("== demo passed in ")


# -- a failure names its step and its reason, never a secret (a fake Builder/Manager/simulator answers) --
SECRET_ADMIN_KEY = "adm_" + "s3cr3t" * 8
CID = "con_0123456789abcdef0123"


class FakeServices:
    """One local HTTP server playing the Builder, the Manager and the simulator, with scripted answers."""

    def __init__(self, answers: dict[str, tuple[int, Any]]) -> None:
        self.answers = {
            "GET /v1/salesforce/authorize": (200, "authorized"),
            "GET /v1/orgs": (200, {"orgs": [{"org_id": "00D000000000001AAA", "instance_url": "x"}]}),
            "GET /v1/orgs/00D000000000001AAA/objects": (200, {"sobjects": [{"name": "Account"}]}),
            "POST /v1/connections": (202, {"id": CID, "status": "pending"}),
            f"GET /v1/connections/{CID}": (200, {"id": CID, "status": "pending"}),
            **answers,
        }
        self.admin_api_key = SECRET_ADMIN_KEY
        self.org_key = "acme"
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        status, body = self.answers.get(f"{request.method} {request.path}", (404, {"title": "Not Found"}))
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status, content_type="application/problem+json")

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return self.sim_url

    def create_api_key(self, name: str, *scopes: str, manager: str = "manager") -> str:
        return "sfc_demo_" + "k" * 40


async def _demo_failure(answers: dict[str, tuple[int, Any]]) -> tuple[DemoFailed, str]:
    fake = FakeServices(answers)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    progress = Progress()
    try:
        with pytest.raises(DemoFailed) as caught:
            await run_demo(fake, progress)
    finally:
        await runner.cleanup()
    return caught.value, progress.failure_line(caught.value)


async def test_a_503_problem_while_waiting_names_the_step_the_status_and_the_problem_not_a_secret() -> None:
    problem = {
        "title": "Service Unavailable",
        "status": 503,
        "detail": f"the database is unreachable (header was Bearer {SECRET_ADMIN_KEY})",
        "code": "database_unavailable",
    }
    failure, line = await _demo_failure({f"GET /v1/connections/{CID}": (503, problem)})
    assert failure.step == "wait until the connection is active"
    assert line.startswith(
        "[FAILED] step 'wait until the connection is active': HTTP 503 database_unavailable"
    )
    assert "Service Unavailable - the database is unreachable" in line
    assert SECRET_ADMIN_KEY not in line and "KeyError" not in line


async def test_an_unexpected_error_inside_a_step_names_that_step() -> None:
    # A 200 whose body lacks "orgs": a KeyError inside the authorize step, not an unnamed crash.
    failure, line = await _demo_failure({"GET /v1/orgs": (200, {"items": []})})
    assert failure.step == "authorize the Builder"
    assert line == "[FAILED] step 'authorize the Builder': unexpected KeyError: 'orgs'"


async def test_a_refused_create_names_the_create_step_and_the_problem() -> None:
    problem = {"title": "Conflict", "detail": "a connection named so exists", "code": "connection_name_taken"}
    failure, _ = await _demo_failure({"POST /v1/connections": (409, problem)})
    assert (failure.step, failure.reason) == (
        "create a connection",
        "HTTP 409 connection_name_taken: Conflict - a connection named so exists",
    )


def test_a_service_that_exits_non_zero_is_named_and_a_clean_or_unstarted_one_is_not() -> None:
    codes = {"manager": 0, "builder": 1, "simulator": -9, "secantusdb": None}
    assert unclean_exits(codes) == ["builder exited 1", "simulator exited -9"]


def test_only_a_broker_the_demo_started_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(demo_support.subprocess, "run", run)
    assert stop_rabbitmq(Broker(started=False, note="reused")) is None
    assert calls == []  # a broker that was already running is left alone
    assert stop_rabbitmq(Broker(started=True, note="started")) is None
    assert calls == [["rabbitmqctl", "shutdown"]]
