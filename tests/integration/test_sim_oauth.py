"""The simulator's OAuth web-server flow: PKCE, codes, refresh rotation and replay, approvals, revocation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from salesforce_sim.testing import SimulatorURL, running_simulator

from tests.integration.sim_support import (
    BUILDER_ID,
    BUILDER_SECRET,
    CALLBACK,
    TIMEOUT,
    authorize,
    pkce_pair,
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


def _code_form(code: str, verifier: str | None, **over: str) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": BUILDER_ID,
        "client_secret": BUILDER_SECRET,
        "redirect_uri": CALLBACK,
    }
    if verifier:
        form["code_verifier"] = verifier
    form.update(over)
    return form


def _refresh_form(token: str, **over: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": BUILDER_ID,
        "client_secret": BUILDER_SECRET,
        **over,
    }


async def _rest_status(http: aiohttp.ClientSession, instance_url: str, token: str) -> int:
    async with http.get(
        f"{instance_url}/services/data/v68.0/sobjects/", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        return resp.status


async def test_the_web_server_flow_returns_a_signed_token_for_the_chosen_user(sim, http) -> None:
    body = await web_server_login(http, sim, ADMIN)
    org = sim.state.org("acme")
    assert body["instance_url"] == f"{sim}/org/acme"
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "api refresh_token"
    assert body["refresh_token"].startswith("5Aep861")
    assert re.fullmatch(r"00D[A-Za-z0-9]{12}!AR[A-Za-z0-9_\-]+", body["access_token"])
    assert body["access_token"].startswith(org.org_id[:15])
    user = org.user_by_username(ADMIN)
    assert body["id"] == f"{sim}/id/{org.org_id}/{user.id}"
    assert re.fullmatch(r"\d{13}", body["issued_at"])
    mac = hmac.new(
        BUILDER_SECRET.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256
    ).digest()
    assert body["signature"] == base64.b64encode(mac).decode()
    assert await _rest_status(http, body["instance_url"], body["access_token"]) == 200


async def test_the_identity_url_describes_the_user(sim, http) -> None:
    body = await web_server_login(http, sim, ADMIN)
    async with http.get(body["id"], headers={"Authorization": f"Bearer {body['access_token']}"}) as resp:
        assert resp.status == 200
        ident = await resp.json()
    assert ident["username"] == ADMIN
    assert ident["organization_id"] == sim.state.org("acme").org_id


async def test_a_code_works_once_and_its_replay_revokes_the_grant(sim, http) -> None:
    verifier, challenge = pkce_pair()
    code = (await authorize(http, sim, login_hint=ADMIN, challenge=challenge))["code"]
    status, first = await post_token(http, sim, _code_form(code, verifier))
    assert status == 200
    status, again = await post_token(http, sim, _code_form(code, verifier))
    assert (status, again["error"], again["error_description"]) == (
        400,
        "invalid_grant",
        "invalid authorization code",
    )
    status, refreshed = await post_token(http, sim, _refresh_form(first["refresh_token"]))
    assert (status, refreshed["error"]) == (400, "invalid_grant")


async def test_an_expired_code_is_refused(sim, http) -> None:
    verifier, challenge = pkce_pair()
    code = (await authorize(http, sim, login_hint=ADMIN, challenge=challenge))["code"]
    sim.state.advance(sim.state.code_lifetime + 1)
    status, body = await post_token(http, sim, _code_form(code, verifier))
    assert (status, body) == (
        400,
        {"error": "invalid_grant", "error_description": "expired authorization code"},
    )


@pytest.mark.parametrize(
    ("verifier", "error"),
    [("wrong-verifier-" + "x" * 50, "invalid_request"), (None, "invalid_grant")],
)
async def test_pkce_verifier_must_match_the_challenge(sim, http, verifier, error) -> None:
    _, challenge = pkce_pair()
    code = (await authorize(http, sim, login_hint=ADMIN, challenge=challenge))["code"]
    status, body = await post_token(http, sim, _code_form(code, verifier))
    assert (status, body["error"], body["error_description"]) == (400, error, "invalid code verifier")


@pytest.mark.parametrize(
    ("over", "error", "description"),
    [
        ({"client_secret": "not-the-secret"}, "invalid_client", "invalid client credentials"),
        ({"client_id": "3MVG9UnknownClient"}, "invalid_client_id", "client identifier invalid"),
        (
            {"redirect_uri": "http://127.0.0.1:8081/elsewhere"},
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        ),
    ],
)
async def test_the_code_exchange_checks_client_and_redirect_uri(sim, http, over, error, description) -> None:
    verifier, challenge = pkce_pair()
    code = (await authorize(http, sim, login_hint=ADMIN, challenge=challenge))["code"]
    status, body = await post_token(http, sim, _code_form(code, verifier, **over))
    assert (status, body) == (400, {"error": error, "error_description": description})


async def test_authorize_errors_for_unknown_clients_and_callbacks_are_pages_not_redirects(sim, http) -> None:
    for params, text in [
        ({"client_id": "nope1234", "redirect_uri": CALLBACK}, "error=invalid_client_id"),
        ({"client_id": BUILDER_ID, "redirect_uri": "https://evil.example/cb"}, "error=redirect_uri_mismatch"),
    ]:
        async with http.get(
            f"{sim}/services/oauth2/authorize",
            params={"response_type": "code", **params},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 400
            assert text in await resp.text()


async def test_authorize_redirects_protocol_errors_to_the_callback(sim, http) -> None:
    base = {"client_id": BUILDER_ID, "redirect_uri": CALLBACK, "state": "s1"}
    for params, error in [
        ({"response_type": "code"}, "invalid_request"),  # PKCE is required on the Builder's app
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code", "code_challenge": pkce_pair()[1], "scope": "api full"}, "invalid_scope"),
    ]:
        async with http.get(
            f"{sim}/services/oauth2/authorize", params={**base, **params}, allow_redirects=False
        ) as resp:
            assert resp.status == 302
            query = parse_qs(urlsplit(resp.headers["Location"]).query)
        assert query["error"] == [error]
        assert query["state"] == ["s1"]


async def test_the_consent_form_allows_or_denies(sim, http) -> None:
    sim.state.auto_approve = False
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": BUILDER_ID,
        "redirect_uri": CALLBACK,
        "code_challenge": challenge,
        "state": "a&b",
        "login_hint": "o'brien&co+sales@acme.example",
    }
    url = f"{sim}/org/acme/services/oauth2/authorize"
    async with http.get(url, params=params) as resp:
        page = await resp.text()
    assert resp.status == 200
    assert "<form" in page and "o&#x27;brien&amp;co+sales@acme.example" in page
    form = {**params, "username": params["login_hint"]}
    async with http.post(url, data={**form, "decision": "allow"}, allow_redirects=False) as resp:
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert resp.status == 302 and query["state"] == ["a&b"] and query["code"][0].startswith("aPrx")
    async with http.post(url, data={**form, "decision": "deny"}, allow_redirects=False) as resp:
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert query["error"] == ["access_denied"]


async def test_an_inactive_user_cannot_approve(sim, http) -> None:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": BUILDER_ID,
        "redirect_uri": CALLBACK,
        "code_challenge": challenge,
        "login_hint": "former.employee@acme.example",
    }
    async with http.get(f"{sim}/services/oauth2/authorize", params=params, allow_redirects=False) as resp:
        assert resp.status == 200
        assert "inactive" in await resp.text()


async def test_refresh_rotation_issues_a_new_token_and_a_replay_revokes_the_grant(sim, http) -> None:
    first = await web_server_login(http, sim, ADMIN)
    status, second = await post_token(http, sim, _refresh_form(first["refresh_token"]))
    assert status == 200
    assert second["refresh_token"] != first["refresh_token"]
    assert second["instance_url"] == first["instance_url"]
    status, replay = await post_token(http, sim, _refresh_form(first["refresh_token"]))
    assert (status, replay) == (
        400,
        {"error": "invalid_grant", "error_description": "expired access/refresh token"},
    )
    status, after = await post_token(http, sim, _refresh_form(second["refresh_token"]))
    assert (status, after["error"]) == (400, "invalid_grant")
    assert await _rest_status(http, second["instance_url"], second["access_token"]) == 401


async def test_without_rotation_the_refresh_token_stays_the_same(sim, http) -> None:
    sim.state.builder_app.rotation = False
    first = await web_server_login(http, sim, ADMIN)
    for _ in range(2):
        status, body = await post_token(http, sim, _refresh_form(first["refresh_token"]))
        assert status == 200 and "refresh_token" not in body
        assert await _rest_status(http, body["instance_url"], body["access_token"]) == 200


async def test_refresh_requires_the_client_secret(sim, http) -> None:
    first = await web_server_login(http, sim, ADMIN)
    status, body = await post_token(
        http, sim, _refresh_form(first["refresh_token"], client_secret="wrong-secret")
    )
    assert (status, body["error"]) == (400, "invalid_client")


async def test_the_sixth_approval_revokes_the_oldest(sim, http) -> None:
    logins = [await web_server_login(http, sim, ADMIN) for _ in range(6)]
    status, oldest = await post_token(http, sim, _refresh_form(logins[0]["refresh_token"]))
    assert (status, oldest["error"]) == (400, "invalid_grant")
    assert await _rest_status(http, logins[0]["instance_url"], logins[0]["access_token"]) == 401
    for login in logins[1:]:
        status, _ = await post_token(http, sim, _refresh_form(login["refresh_token"]))
        assert status == 200
    approvals = [g for g in sim.state.tokens.grants.values() if g.app_key == BUILDER_ID]
    assert len(approvals) == 5


async def test_revoking_tokens(sim, http) -> None:
    login = await web_server_login(http, sim, ADMIN)
    async with http.post(
        f"{sim}/org/acme/services/oauth2/revoke", data={"token": login["access_token"]}
    ) as resp:
        assert resp.status == 200
    assert await _rest_status(http, login["instance_url"], login["access_token"]) == 401
    status, fresh = await post_token(http, sim, _refresh_form(login["refresh_token"]))
    assert status == 200
    async with http.post(f"{sim}/services/oauth2/revoke", data={"token": fresh["refresh_token"]}) as resp:
        assert resp.status == 200
    assert await _rest_status(http, fresh["instance_url"], fresh["access_token"]) == 401
    async with http.post(f"{sim}/services/oauth2/revoke", data={"token": "nonsense"}) as resp:
        assert (resp.status, (await resp.json())["error"]) == (400, "invalid_token")


async def test_sessions_expire_after_the_inactivity_timeout(sim, http) -> None:
    sim.state.org("acme").knobs.session_timeout_seconds = 60
    login = await web_server_login(http, sim, ADMIN)
    sim.state.advance(45)
    assert await _rest_status(http, login["instance_url"], login["access_token"]) == 200
    sim.state.advance(45)  # 45 s since the last use: still alive
    assert await _rest_status(http, login["instance_url"], login["access_token"]) == 200
    sim.state.advance(61)
    async with http.get(
        f"{login['instance_url']}/services/data/v68.0/sobjects/",
        headers={"Authorization": f"Bearer {login['access_token']}"},
    ) as resp:
        assert resp.status == 401
        assert await resp.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]
    status, fresh = await post_token(http, sim, _refresh_form(login["refresh_token"]))
    assert status == 200
    assert await _rest_status(http, fresh["instance_url"], fresh["access_token"]) == 200


async def test_a_token_is_only_valid_on_its_own_org(sim, http) -> None:
    login = await web_server_login(http, sim, ADMIN)
    assert await _rest_status(http, f"{sim}/org/globex", login["access_token"]) == 401


async def test_usernames_with_plus_ampersand_and_quote_log_in(sim, http) -> None:
    login = await web_server_login(http, sim, "o'brien&co+sales@acme.example", token_host=f"{sim}/org/acme")
    assert login["id"].endswith(sim.state.org("acme").user_by_username("o'brien&co+sales@acme.example").id)


async def test_unknown_grant_types_and_non_form_bodies_are_refused(sim, http) -> None:
    status, body = await post_token(http, sim, {"grant_type": "password"})
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    async with http.post(f"{sim}/services/oauth2/token", json={"grant_type": "refresh_token"}) as resp:
        assert (resp.status, (await resp.json())["error"]) == (400, "invalid_request")


async def test_a_code_still_works_after_an_injected_503_on_its_exchange(sim, http) -> None:
    verifier, challenge = pkce_pair()
    code = (await authorize(http, sim, login_hint=ADMIN, challenge=challenge))["code"]
    sim.state.org("acme").knobs.fail_next_5xx = 1
    async with http.post(f"{sim}/services/oauth2/token", data=_code_form(code, verifier)) as resp:
        assert resp.status == 503
    status, body = await post_token(http, sim, _code_form(code, verifier))
    assert status == 200, body
    assert await _rest_status(http, body["instance_url"], body["access_token"]) == 200


def _org_app(sim: SimulatorURL, name: str, key: str, **flags: bool) -> str:
    sim.state.add_connected_app(
        sim.state.org("acme"),
        {
            "fullName": name,
            "label": name,
            "contactEmail": ADMIN,
            "oauthConfig": {
                "callbackUrl": "https://app.example/cb",
                "consumerKey": key,
                "consumerSecret": "OrgAppSecret0123",
                "scopes": ["Api", "RefreshToken"],
                **flags,
            },
        },
    )
    return key


async def _exchange(http, sim, client_id: str, secret: str | None) -> tuple[int, dict]:
    query = await authorize(
        http, sim, login_hint=ADMIN, client_id=client_id, redirect_uri="https://app.example/cb"
    )
    form = _code_form(query["code"], None, client_id=client_id, redirect_uri="https://app.example/cb")
    form.pop("client_secret")
    if secret:
        form["client_secret"] = secret
    return await post_token(http, sim, form)


async def test_the_web_server_secret_follows_is_consumer_secret_optional_and_refresh_its_own_flag(
    sim, http
) -> None:
    optional = _org_app(sim, "Secret_Optional", "SecretOptionalKey01", isConsumerSecretOptional=True)
    status, body = await _exchange(http, sim, optional, None)
    assert status == 200, body
    status, refused = await post_token(
        http,
        sim,
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": optional},
    )
    assert (status, refused["error"]) == (
        400,
        "invalid_client",
    )  # isSecretRequiredForRefreshToken defaults true

    no_refresh_secret = _org_app(
        sim, "Refresh_Open", "RefreshOpenKey0001", isSecretRequiredForRefreshToken=False
    )
    status, refused = await _exchange(http, sim, no_refresh_secret, None)
    assert (status, refused["error"]) == (400, "invalid_client")  # the web-server flow still needs it
    status, body = await _exchange(http, sim, no_refresh_secret, "OrgAppSecret0123")
    assert status == 200, body
    status, refreshed = await post_token(
        http,
        sim,
        {
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": no_refresh_secret,
        },
    )
    assert status == 200, refreshed


async def test_a_user_deactivated_between_authorize_and_token_gets_inactive_user(sim, http) -> None:
    verifier, challenge = pkce_pair()
    user = "o'brien&co+sales@acme.example"
    code = (await authorize(http, sim, login_hint=user, challenge=challenge))["code"]
    async with http.patch(f"{sim}/__sim/orgs/acme/users/{user}", json={"active": False}) as resp:
        assert resp.status == 200
    status, body = await post_token(http, sim, _code_form(code, verifier))
    assert (status, body) == (400, {"error": "invalid_grant", "error_description": "inactive user"})
    assert sim.state.tokens.issued["authorization_code"] == 0
