"""JWT bearer and client credentials against the simulator: success, every documented error, propagation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
import yaml
from pydantic import ValidationError
from salesforce_sim.config import default_config, load_config
from salesforce_sim.model import SimConfig
from salesforce_sim.testing import SimulatorURL, running_simulator

from tests.integration.sim_support import TIMEOUT, jwt_form, make_cert, mint_jwt, post_token

pytestmark = pytest.mark.integration
KEY, CERT = make_cert()
OTHER_KEY, _ = make_cert("someone-else")
CONSUMER_KEY = "LegacyAppConsumerKey0001"
SECRET = "LegacyAppSecret0123456789"
PREAUTHORIZED = "integration+bot@acme.example"
QUOTED = "o'brien&co+sales@acme.example"
LOGIN = "https://login.salesforce.com"


def _config() -> dict[str, Any]:
    cfg = default_config().model_dump()
    acme = cfg["orgs"][0]
    for user in acme["users"]:
        if user["username"] in (PREAUTHORIZED, QUOTED):
            user["permission_sets"] = ["Sales_Ops"]
    acme["connected_apps"] = [
        {
            "fullName": "Legacy_App",
            "label": "Legacy App",
            "contactEmail": "admin@acme.example",
            "oauthConfig": {
                "callbackUrl": "https://legacy.example/cb",
                "certificate": CERT,
                "consumerKey": CONSUMER_KEY,
                "consumerSecret": SECRET,
                "isAdminApproved": True,
                "isClientCredentialEnabled": True,
                "oauthClientCredentialUser": PREAUTHORIZED,
                "scopes": ["Api", "RefreshToken"],
            },
            "permissionSetName": ["Sales_Ops"],
        },
        {
            "fullName": "Self_Authorized",
            "label": "Self Authorized",
            "contactEmail": "admin@acme.example",
            "oauthConfig": {
                "callbackUrl": "https://self.example/cb",
                "certificate": CERT,
                "consumerKey": "SelfAuthorizedKey0001",
                "scopes": ["Api"],
            },
        },
    ]
    return cfg


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorURL]:
    async with running_simulator(_config()) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


async def _jwt(http, host, **claims: Any) -> tuple[int, dict[str, Any]]:
    key = claims.pop("key", KEY)
    if "exp_in" in claims:  # relative to now, so a parameter made at collection time does not go stale
        claims["exp"] = time.time() + claims.pop("exp_in")
    base = {"iss": CONSUMER_KEY, "sub": PREAUTHORIZED, "aud": LOGIN}
    return await post_token(http, host, jwt_form(mint_jwt(key, **{**base, **claims})))


async def test_jwt_bearer_issues_a_signed_access_token_without_a_refresh_token(sim, http) -> None:
    status, body = await _jwt(http, sim)
    assert status == 200, body
    assert "refresh_token" not in body
    assert body["scope"] == "api"
    assert body["instance_url"] == f"{sim}/org/acme"
    mac = hmac.new(SECRET.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256).digest()
    assert body["signature"] == base64.b64encode(mac).decode()
    async with http.get(
        f"{body['instance_url']}/services/data/v68.0/limits",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    ) as resp:
        assert resp.status == 200
    assert sim.state.tokens.issued["jwt_bearer"] == 1


async def test_jwt_audience_may_be_the_login_host_the_simulator_or_the_my_domain(sim, http) -> None:
    for aud in (LOGIN, f"{LOGIN}/", str(sim), f"{sim}/org/acme"):
        status, body = await _jwt(http, f"{sim}/org/acme", aud=aud)
        assert status == 200, (aud, body)


async def test_a_username_with_plus_ampersand_and_quote_is_a_valid_subject(sim, http) -> None:
    status, body = await _jwt(http, sim, sub=QUOTED)
    assert status == 200, body
    assert body["id"].endswith(sim.state.org("acme").user_by_username(QUOTED).id)


@pytest.mark.parametrize(
    ("claims", "error", "description"),
    [
        ({"iss": "UnknownConsumerKey99"}, "invalid_client_id", "client identifier invalid"),
        ({"key": OTHER_KEY}, "invalid_grant", "invalid assertion"),
        ({"aud": "https://test.salesforce.com"}, "invalid_grant", "audience is invalid"),
        ({"aud": "https://evil.example"}, "invalid_grant", "audience is invalid"),
        ({"exp_in": -5}, "invalid_grant", "invalid assertion"),
        ({"exp_in": 600}, "invalid_grant", "invalid assertion"),
        ({"sub": "nobody@acme.example"}, "invalid_grant", "user hasn't approved this consumer"),
        ({"sub": "former.employee@acme.example"}, "invalid_grant", "inactive user"),
        (
            {"sub": "admin@acme.example"},
            "invalid_app_access",
            "user is not admin approved to access this app",
        ),
        ({"iss": "SelfAuthorizedKey0001"}, "invalid_grant", "user hasn't approved this consumer"),
    ],
)
async def test_jwt_bearer_errors(sim, http, claims, error, description) -> None:
    status, body = await _jwt(http, sim, **claims)
    assert (status, body) == (400, {"error": error, "error_description": description})


async def test_a_malformed_or_non_rs256_assertion_is_invalid(sim, http) -> None:
    hs = jwt.encode(
        {"iss": CONSUMER_KEY, "sub": PREAUTHORIZED, "aud": LOGIN, "exp": int(time.time()) + 60},
        "k" * 32,
        algorithm="HS256",
    )
    for assertion in ("not-a-jwt", hs):
        status, body = await post_token(http, sim, jwt_form(assertion))
        assert (status, body["error"], body["error_description"]) == (
            400,
            "invalid_grant",
            "invalid assertion",
        )


async def test_an_app_is_unknown_on_another_orgs_my_domain(sim, http) -> None:
    status, body = await _jwt(http, f"{sim}/org/globex")
    assert (status, body["error"]) == (400, "invalid_client_id")


async def test_a_sandbox_org_accepts_the_test_audience(sim, http) -> None:
    org = sim.state.org("globex")
    ps = sim.state.create_permission_set(org, "Etl", "ETL")
    sim.state.assign(org, org.user_by_username("etl+nightly@globex.example.dev").id, ps.id)
    app = sim.state.add_connected_app(
        org,
        {
            "fullName": "Etl_App",
            "label": "ETL",
            "contactEmail": "a@globex.example",
            "oauthConfig": {
                "callbackUrl": "https://e.example/cb",
                "certificate": CERT,
                "isAdminApproved": True,
                "scopes": ["Api"],
            },
            "permissionSetName": ["Etl"],
        },
    )
    status, body = await _jwt(
        http,
        sim,
        iss=app.consumer_key,
        sub="etl+nightly@globex.example.dev",
        aud="https://test.salesforce.com",
    )
    assert status == 200, body
    status, body = await _jwt(
        http, sim, iss=app.consumer_key, sub="etl+nightly@globex.example.dev", aud=LOGIN
    )
    assert (status, body["error_description"]) == (400, "audience is invalid")


async def test_pre_existing_apps_are_known_at_once_whatever_the_propagation_delay(http) -> None:
    cfg = _config()
    cfg["orgs"][0]["knobs"]["propagation_delay_seconds"] = 600
    async with running_simulator(cfg) as sim:
        status, body = await _jwt(http, sim)  # Legacy_App, from the state file
        assert status == 200, body
        installed = {
            "fullName": "Installed_App",
            "label": "Installed",
            "contactEmail": "a@acme.example",
            "oauthConfig": {
                "callbackUrl": "https://f.example/cb",
                "certificate": CERT,
                "consumerKey": "InstalledAppKey0001",
                "isAdminApproved": True,
                "scopes": ["Api"],
            },
            "permissionSetName": ["Sales_Ops"],
        }
        async with http.post(f"{sim}/__sim/orgs/acme/connected-apps", json=installed) as resp:
            assert resp.status in (200, 201), await resp.text()
        status, body = await _jwt(http, sim, iss="InstalledAppKey0001")
        assert status == 200, body
        await sim_reset(http, sim)  # a reset rebuilds the state file's apps: still known at once
        status, body = await _jwt(http, sim)
        assert status == 200, body


async def sim_reset(http: aiohttp.ClientSession, sim: SimulatorURL) -> None:
    async with http.post(f"{sim}/__sim/reset") as resp:
        assert resp.status == 200, await resp.text()


async def test_client_credentials_runs_as_the_configured_user_on_the_my_domain_only(sim, http) -> None:
    form = {"grant_type": "client_credentials", "client_id": CONSUMER_KEY, "client_secret": SECRET}
    status, body = await post_token(http, f"{sim}/org/acme", form)
    assert status == 200, body
    assert "refresh_token" not in body
    assert body["id"].endswith(sim.state.org("acme").user_by_username(PREAUTHORIZED).id)
    status, body = await post_token(http, sim, form)
    assert (status, body) == (
        400,
        {"error": "invalid_grant", "error_description": "request not supported on this domain"},
    )
    status, body = await post_token(http, f"{sim}/org/acme", {**form, "client_secret": "wrong-secret"})
    assert (status, body["error"]) == (400, "invalid_client")
    status, body = await post_token(http, f"{sim}/org/acme", {**form, "client_id": "SelfAuthorizedKey0001"})
    assert (status, body["error"]) == (400, "invalid_client")  # no secret was shared for that app
    app = sim.state.org("acme").apps["Self_Authorized"]
    status, body = await post_token(
        http, f"{sim}/org/acme", {**form, "client_id": app.consumer_key, "client_secret": app.consumer_secret}
    )
    assert (status, body) == (
        400,
        {"error": "invalid_grant", "error_description": "no client credentials user enabled"},
    )


async def test_injected_failures_apply_to_the_token_endpoint_of_the_org(sim, http) -> None:
    sim.state.org("acme").knobs.fail_next_5xx = 1
    async with http.post(
        f"{sim}/services/oauth2/token",
        data=jwt_form(mint_jwt(KEY, iss=CONSUMER_KEY, sub=PREAUTHORIZED, aud=LOGIN)),
    ) as resp:
        assert resp.status == 503
    status, _ = await _jwt(http, sim)
    assert status == 200


async def test_a_token_refused_user_from_the_state_file_gets_invalid_app_access_despite_the_permission_set(
    http, tmp_path
) -> None:
    cfg = _config()
    for user in cfg["orgs"][0]["users"]:
        if user["username"] == QUOTED:
            user["preauthorization"] = "token_refused"
    path = tmp_path / "state.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    async with running_simulator(load_config(path)) as sim:
        org = sim.state.org("acme")
        assert [p.name for p in org.user_permission_sets(org.user_by_username(QUOTED).id)] == ["Sales_Ops"]
        status, body = await _jwt(http, sim, sub=QUOTED)
        assert (status, body) == (
            400,
            {
                "error": "invalid_app_access",
                "error_description": "user is not admin approved to access this app",
            },
        )
        status, body = await _jwt(http, sim)  # the other holder of the permission set is unaffected
        assert status == 200, body
        assert sim.state.tokens.issued["jwt_bearer"] == 1


async def test_the_admin_api_makes_an_existing_user_token_refused_and_back(sim, http) -> None:
    url = f"{sim}/__sim/orgs/acme/users/{PREAUTHORIZED}"
    async with http.patch(url, json={"preauthorization": "token_refused"}) as resp:
        assert resp.status == 200 and (await resp.json())["Preauthorization"] == "token_refused"
    status, body = await _jwt(http, sim)
    assert (status, body["error"]) == (400, "invalid_app_access")
    async with http.patch(url, json={"preauthorization": "ok"}) as resp:
        assert resp.status == 200
    status, body = await _jwt(http, sim)
    assert status == 200, body


def test_a_license_refused_user_cannot_be_given_permission_sets_in_the_state_file() -> None:
    cfg = _config()
    for user in cfg["orgs"][0]["users"]:
        if user["username"] == QUOTED:
            user["preauthorization"] = "license_refused"
    with pytest.raises(ValidationError, match="license_refused user cannot be given permission_sets"):
        SimConfig.model_validate(cfg)


@pytest.mark.parametrize("scopes", [["RefreshToken"], ["OfflineAccess"], ["RefreshToken", "OfflineAccess"]])
async def test_jwt_bearer_refuses_an_app_with_no_standard_scope_besides_refresh_token(
    sim, http, scopes
) -> None:
    sim.state.add_connected_app(
        sim.state.org("acme"),
        {
            "fullName": "Refresh_Only",
            "label": "Refresh only",
            "contactEmail": "a@acme.example",
            "oauthConfig": {
                "callbackUrl": "https://r.example/cb",
                "certificate": CERT,
                "consumerKey": "RefreshOnlyKey0001",
                "isAdminApproved": True,
                "scopes": scopes,
            },
            "permissionSetName": ["Sales_Ops"],
        },
    )
    status, body = await _jwt(http, sim, iss="RefreshOnlyKey0001")
    assert (status, body) == (
        400,
        {"error": "invalid_grant", "error_description": "no standard scope other than refresh_token"},
    )
    assert sim.state.tokens.issued["jwt_bearer"] == 0


def _client_credentials_app(sim: SimulatorURL, run_as: str) -> dict[str, str]:
    sim.state.add_connected_app(
        sim.state.org("acme"),
        {
            "fullName": "Cc_App",
            "label": "CC",
            "contactEmail": "a@acme.example",
            "oauthConfig": {
                "callbackUrl": "https://cc.example/cb",
                "consumerKey": "CcAppConsumerKey01",
                "consumerSecret": "CcAppSecret0123",
                "isClientCredentialEnabled": True,
                "oauthClientCredentialUser": run_as,
                "scopes": ["Api"],
            },
        },
    )
    return {
        "grant_type": "client_credentials",
        "client_id": "CcAppConsumerKey01",
        "client_secret": "CcAppSecret0123",
    }


async def test_client_credentials_refuses_a_run_as_user_without_api_only(sim, http) -> None:
    form = _client_credentials_app(sim, QUOTED)  # a standard user, not API Only
    status, body = await post_token(http, f"{sim}/org/acme", form)
    assert (status, body) == (
        400,
        {
            "error": "invalid_grant",
            "error_description": "client credentials user must have the API Only permission",
        },
    )


async def test_client_credentials_refuses_an_inactive_run_as_user(sim, http) -> None:
    form = _client_credentials_app(sim, PREAUTHORIZED)
    status, body = await post_token(http, f"{sim}/org/acme", form)
    assert status == 200, body
    async with http.patch(f"{sim}/__sim/orgs/acme/users/{PREAUTHORIZED}", json={"active": False}) as resp:
        assert resp.status == 200
    status, body = await post_token(http, f"{sim}/org/acme", form)
    assert (status, body) == (400, {"error": "invalid_grant", "error_description": "inactive user"})


async def test_client_credentials_refuses_an_unknown_client(sim, http) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": "NoSuchConsumerKey01",
        "client_secret": "Whatever0123",
    }
    status, body = await post_token(http, f"{sim}/org/acme", form)
    assert (status, body) == (
        400,
        {"error": "invalid_client_id", "error_description": "client identifier invalid"},
    )
