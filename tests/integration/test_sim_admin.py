"""The simulator's admin API, its determinism, its logging, and the standalone entry point."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from salesforce_sim.testing import SimulatorURL, running_simulator

from shared.logging import configure_logging
from tests.integration.sim_support import (
    BUILDER_ID,
    BUILDER_SECRET,
    TIMEOUT,
    jwt_form,
    make_cert,
    mint_jwt,
    post_token,
    web_server_login,
)

pytestmark = pytest.mark.integration
ADMIN = "admin@acme.example"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorURL]:
    async with running_simulator() as url:
        url.state.auto_approve = True
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


async def _admin(http, sim, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    async with http.request(method, f"{sim}/__sim{path}", json=body) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def _rest(http, login: dict[str, Any], path: str = "/limits") -> int:
    async with http.get(
        f"{login['instance_url']}/services/data/v68.0{path}",
        headers={"Authorization": f"Bearer {login['access_token']}"},
    ) as resp:
        return resp.status


def _refresh(login: dict[str, Any]) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": login["refresh_token"],
        "client_id": BUILDER_ID,
        "client_secret": BUILDER_SECRET,
    }


async def test_state_shows_counts_but_never_token_or_secret_values(sim, http) -> None:
    _key, cert = make_cert()
    app = await _admin(
        http,
        sim,
        "POST",
        "/orgs/acme/connected-apps",
        {
            "fullName": "Shown_App",
            "label": "Shown",
            "contactEmail": "a@acme.example",
            "oauthConfig": {
                "callbackUrl": "https://s.example/cb",
                "certificate": cert,
                "consumerSecret": "VerySecretValue123",
                "scopes": ["Api"],
            },
        },
        status=201,
    )
    login = await web_server_login(http, sim, ADMIN)
    state = await _admin(http, sim, "GET", "/state")
    dump = json.dumps(state)
    for secret in (login["access_token"], login["refresh_token"], BUILDER_SECRET, "VerySecretValue123"):
        assert secret not in dump
    assert state["tokens"]["issued"]["authorization_code"] == 1
    assert state["tokens"]["active_access_tokens"] == 1 and state["tokens"]["approvals"] == 1
    assert state["approvals"][0]["username"] == ADMIN and state["approvals"][0]["client_id"] == BUILDER_ID
    assert state["orgs"]["acme"]["apps"][0]["consumerKey"] == app["consumerKey"]
    assert state["builder_app"]["consumerKey"] == BUILDER_ID and "consumerSecret" not in state["builder_app"]


async def test_reset_returns_to_the_configured_state(sim, http) -> None:
    login = await web_server_login(http, sim, ADMIN)
    await _admin(http, sim, "POST", "/orgs/acme/users", {"username": "temp@acme.example"}, status=201)
    await _admin(http, sim, "PATCH", "/orgs/acme", {"latency_ms": 5, "connected_apps_blocked": True})
    await _admin(http, sim, "POST", "/clock", {"advance_seconds": 30})
    state = await _admin(http, sim, "POST", "/reset")
    assert "temp@acme.example" not in [u["Username"] for u in state["orgs"]["acme"]["users"]]
    assert state["orgs"]["acme"]["knobs"]["connected_apps_blocked"] is False
    assert state["clock_offset_seconds"] == 0 and state["tokens"]["approvals"] == 0
    assert await _rest(http, login) == 401


async def test_knob_changes_are_validated(sim, http) -> None:
    await _admin(http, sim, "PATCH", "/orgs/acme", {"no_such_knob": 1}, status=400)
    await _admin(http, sim, "PATCH", "/orgs/acme", {"latency_ms": -1}, status=400)
    await _admin(http, sim, "PATCH", "/orgs/acme", {"error_rate_5xx": 2}, status=400)
    await _admin(http, sim, "PATCH", "/orgs/nowhere", {"latency_ms": 1}, status=404)
    org = await _admin(http, sim, "PATCH", "/orgs/acme", {"api_limit": None, "session_timeout_seconds": 30})
    assert org["knobs"]["api_limit"] is None and org["knobs"]["session_timeout_seconds"] == 30


async def test_expiring_sessions_keeps_refresh_tokens(sim, http) -> None:
    login = await web_server_login(http, sim, ADMIN)
    assert (await _admin(http, sim, "POST", "/orgs/acme/expire-sessions"))["expired_sessions"] == 1
    assert await _rest(http, login) == 401
    status, fresh = await post_token(http, sim, _refresh(login))
    assert status == 200 and await _rest(http, fresh) == 200


async def test_revoking_the_builders_grants(sim, http) -> None:
    login = await web_server_login(http, sim, ADMIN)
    assert (await _admin(http, sim, "POST", "/orgs/acme/revoke-grants"))["revoked_grants"] == 1
    status, body = await post_token(http, sim, _refresh(login))
    assert (status, body["error"]) == (400, "invalid_grant")
    assert await _rest(http, login) == 401


async def test_added_users_with_awkward_usernames_log_in_and_are_found(sim, http) -> None:
    username = "a+b&c'd@acme.example"
    user = await _admin(
        http, sim, "POST", "/orgs/acme/users", {"username": username, "name": "Awkward"}, status=201
    )
    await _admin(http, sim, "POST", "/orgs/globex/users", {"username": username.upper()}, status=409)
    login = await web_server_login(http, sim, username)
    assert login["id"].endswith(user["Id"])
    soql = "SELECT Id FROM User WHERE Username = 'a+b&c\\'d@acme.example'"
    async with http.get(
        f"{login['instance_url']}/services/data/v68.0/query",
        params={"q": soql},
        headers={"Authorization": f"Bearer {login['access_token']}"},
    ) as resp:
        assert (await resp.json())["records"][0]["Id"] == user["Id"]


async def test_deactivating_a_user_ends_their_sessions_and_jwt_logins(sim, http) -> None:
    key, cert = make_cert()
    app = await _admin(
        http,
        sim,
        "POST",
        "/orgs/acme/connected-apps",
        {
            "fullName": "Jwt_App",
            "label": "Jwt",
            "contactEmail": "a@acme.example",
            "oauthConfig": {
                "callbackUrl": "https://j.example/cb",
                "certificate": cert,
                "isAdminApproved": True,
                "scopes": ["Api"],
            },
            "profileName": ["System Administrator"],
        },
        status=201,
    )
    login = await web_server_login(http, sim, ADMIN)
    status, _ = await post_token(
        http, sim, jwt_form(mint_jwt(key, iss=app["consumerKey"], sub=ADMIN, aud=sim))
    )
    assert status == 200  # pre-authorized through the profile
    await _admin(http, sim, "PATCH", f"/orgs/acme/users/{ADMIN}", {"active": False})
    assert await _rest(http, login) == 401
    status, body = await post_token(
        http, sim, jwt_form(mint_jwt(key, iss=app["consumerKey"], sub=ADMIN, aud=sim))
    )
    assert (status, body["error_description"]) == (400, "inactive user")


async def test_the_5xx_rate_is_reproducible_with_the_seed(http) -> None:
    runs = []
    for _ in range(2):
        async with running_simulator(
            {"seed": 7, "auto_approve": True, "orgs": [{"key": "acme", "users": [{"username": ADMIN}]}]}
        ) as url:
            login = await web_server_login(http, url, ADMIN)
            url.state.org("acme").knobs.error_rate_5xx = 0.5
            runs.append([await _rest(http, login) for _ in range(20)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}


async def test_orgs_can_be_added_and_the_builder_app_changed(sim, http) -> None:
    org = await _admin(
        http,
        sim,
        "POST",
        "/orgs",
        {"key": "initech", "users": [{"username": "bill@initech.example"}]},
        status=201,
    )
    await _admin(http, sim, "POST", "/orgs", {"key": "initech"}, status=409)
    app = await _admin(http, sim, "PATCH", "/builder-app", {"refresh_token_rotation": False})
    assert app["refreshTokenRotation"] is False
    await _admin(http, sim, "PATCH", "/builder-app", {"client_id": "bad id!"}, status=400)
    login = await web_server_login(http, f"{sim}/org/initech", "bill@initech.example")
    assert login["instance_url"] == f"{sim}{org['instance_path']}"
    status, body = await post_token(http, sim, _refresh(login))
    assert status == 200 and "refresh_token" not in body


async def test_unexpected_errors_are_500s_and_log_no_secrets(sim, http, monkeypatch) -> None:
    from salesforce_sim import rest

    login = await web_server_login(http, sim, ADMIN)

    def boom(*_args: Any) -> Any:
        raise RuntimeError(f"leaked {login['access_token']}")

    monkeypatch.setattr(rest, "rows", boom)
    out = io.StringIO()
    configure_logging("salesforce-sim", "INFO", json=True, stream=out)
    try:
        async with http.get(
            f"{login['instance_url']}/services/data/v68.0/query",
            params={"q": "SELECT Id FROM User"},
            headers={"Authorization": f"Bearer {login['access_token']}"},
        ) as resp:
            assert resp.status == 500
            assert (await resp.json())[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    finally:
        configure_logging("salesforce-sim", "INFO", json=True)
    logged = out.getvalue()
    assert "unhandled_error" in logged and "RuntimeError" in logged
    assert login["access_token"] not in logged


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_standalone_simulator_serves_a_state_file_over_tls(tmp_path: Path) -> None:
    import requests

    state = {
        "auto_approve": True,
        "orgs": [{"key": "solo", "name": "Solo", "users": [{"username": "only@solo.example"}]}],
    }
    (tmp_path / "state.yaml").write_text(yaml.safe_dump(state))
    port, cert = _free_port(), tmp_path / "cert.pem"
    cmd = [
        sys.executable,
        "-m",
        "salesforce_sim",
        "--port",
        str(port),
        "--config",
        str(tmp_path / "state.yaml"),
        "--tls",
        "--tls-cert-out",
        str(cert),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "LOG_JSON": "false"},
    )
    try:
        deadline, last = time.monotonic() + 20, None
        while time.monotonic() < deadline:
            try:
                resp = requests.get(f"https://127.0.0.1:{port}/__sim/state", verify=str(cert), timeout=2)
                break
            except (requests.ConnectionError, OSError) as exc:
                last = exc
                time.sleep(0.1)
        else:
            raise AssertionError(f"the simulator did not start: {last}")
        assert list(resp.json()["orgs"]) == ["solo"]
        versions = requests.get(
            f"https://127.0.0.1:{port}/org/solo/services/data/", verify=str(cert), timeout=5
        )
        assert versions.json()[-1]["version"] == "68.0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_a_bad_state_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"orgs": [{"key": "Bad Key"}]}))
    done = subprocess.run(
        [sys.executable, "-m", "salesforce_sim", "--config", str(tmp_path / "state.json")],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 2
    assert "invalid simulator state file" in done.stderr and "key" in done.stderr


async def test_installing_a_connected_app_checks_it_like_the_metadata_api(sim, http) -> None:
    base = {"fullName": "Checked", "label": "C", "contactEmail": "a@acme.example"}
    body = await _admin(http, sim, "POST", "/orgs/acme/connected-apps", {**base, "bogus": 1}, status=400)
    assert body["statusCode"] == "INVALID_FIELD" and "bogus" in body["error"]
    body = await _admin(http, sim, "POST", "/orgs/acme/connected-apps", base, status=400)
    assert "oauthConfig" in body["error"]
    assert sim.state.org("acme").metadata.get("ConnectedApp", {}) == {}
    sim.state.org("acme").knobs.connected_apps_blocked = True  # pre-existing apps are not new creations
    oauth = {"callbackUrl": "https://c.example/cb", "scopes": ["Api"]}
    app = await _admin(
        http,
        sim,
        "POST",
        "/orgs/acme/connected-apps",
        {**base, "fullName": "Old_App", "oauthConfig": oauth},
        status=201,
    )
    assert app["kind"] == "connected_app" and app["consumerKey"].startswith("3MVG9")


@pytest.mark.parametrize("advance", [1e300, float("inf"), -1], ids=["huge", "infinite", "negative"])
async def test_the_clock_refuses_a_jump_no_datetime_can_hold(sim, http, advance: float) -> None:
    async with http.post(
        f"{sim}/__sim/clock",
        data=f'{{"advance_seconds": {"Infinity" if advance == float("inf") else advance}}}',
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400, await resp.text()
    state = await _admin(http, sim, "GET", "/state")
    assert state["clock_offset_seconds"] == 0
