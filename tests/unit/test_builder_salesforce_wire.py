"""The adapter on the wire, against a loopback server replaying payloads recorded in salesforce-facts.md."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from builder.salesforce import apps
from builder.salesforce.errors import (
    AuthorizationRevoked,
    OAuthError,
    RequestLimitExceeded,
    SalesforceUnavailable,
)
from builder.salesforce.gateway import SalesforceGateway
from builder.salesforce.jwt import JwtBearer
from builder.salesforce.metadata import MetadataApi
from builder.salesforce.oauth import OAuthClient
from builder.salesforce.rest import Access, RestApi
from builder.salesforce.transport import Transport
from builder.store import OrgAuthorization, OrgStatus
from lxml import etree

from tests.unit.builder_fakes import FakeStore

pytestmark = pytest.mark.unit
ORG = "00D000000000001AAA"
SOAP_OK = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns="http://soap.sforce.com/2006/04/metadata" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<soapenv:Body>{}</soapenv:Body></soapenv:Envelope>"
)
SOAP_FAULT = SOAP_OK.format(
    "<soapenv:Fault><faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>INVALID_SESSION_ID: Invalid Session ID "
    "found in SessionHeader: Illegal Session</faultstring></soapenv:Fault>"
)
Reply = Callable[[web.Request, str], Any]


@dataclass
class FakeSalesforceServer:
    """Scripted answers per route; every request is recorded."""

    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[tuple[str, web.Request, str]] = field(default_factory=list)

    def script(self, route: str, *replies: Reply) -> None:
        self.scripts.setdefault(route, []).extend(replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        route = request.path
        if route.endswith("/Soap/m/68.0"):
            route = f"soap:{request.headers.get('SOAPAction')}"
        self.requests.append((route, request, body))
        queue = self.scripts.get(route) or []
        if not queue:
            return web.Response(status=599, text=f"unscripted {route}")
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        result = reply(request, body)
        return await result if inspect.isawaitable(result) else result

    def seen(self, route: str) -> list[tuple[web.Request, str]]:
        return [(r, b) for name, r, b in self.requests if name == route]


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return lambda _r, _b: web.json_response(data, status=status, headers=headers)


def soap_reply(inner: str, status: int = 200) -> Reply:
    return lambda _r, _b: web.Response(text=SOAP_OK.format(inner), status=status, content_type="text/xml")


@dataclass
class Rig:
    server: FakeSalesforceServer
    base: str
    store: FakeStore
    gateway: SalesforceGateway
    rest: RestApi


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    fake = FakeSalesforceServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        transport = Transport(session, timeout=0.5)
        store = FakeStore()
        await store.save_authorization(
            OrgAuthorization(
                org_id=ORG, user_id="005x", instance_url=base, login_url=base, is_sandbox=False,
                scopes=["api", "refresh_token"], refresh_token="5Aep-old-refresh", access_token="00Dold!token",
            )
        )  # fmt: skip
        rest = RestApi(transport, "68.0")
        gateway = SalesforceGateway(
            store=store, oauth=OAuthClient(transport, "cid", "csecret", f"{base}/cb"), rest=rest,
            metadata=MetadataApi(transport, "68.0"), jwt=JwtBearer(transport), holder="t", lease_seconds=2,
        )  # fmt: skip
        yield Rig(fake, base, store, gateway, rest)
    await server.close()


def refreshed(access: str = "00Dnew!token", refresh: str | None = "5Aep-rotated") -> Reply:
    data = {"access_token": access, "instance_url": "", "id": "", "issued_at": "1", "token_type": "Bearer"}
    if refresh:
        data["refresh_token"] = refresh

    def reply(request: web.Request, body: str) -> web.Response:
        data["instance_url"] = f"{request.scheme}://{request.host}"
        return web.json_response(data)

    return reply


async def test_a_username_with_plus_ampersand_and_quote_reaches_soql_intact(rig: Rig) -> None:
    username = "o'brien+ops&co@acme.example.com"
    rig.server.script(
        "/services/data/v68.0/query/",
        json_reply(
            {
                "totalSize": 1,
                "done": True,
                "records": [{"Id": "005A", "Username": username, "IsActive": True}],
            }
        ),
    )
    org = await rig.gateway.org(ORG)
    user = await org.find_user(username)
    assert user is not None and user.id == "005A" and user.is_active
    request, _ = rig.server.seen("/services/data/v68.0/query/")[0]
    assert (
        request.query["q"]
        == "SELECT Id, Username, IsActive FROM User WHERE Username = 'o\\'brien+ops&co@acme.example.com'"
    )
    assert request.headers["Authorization"] == "Bearer 00Dold!token"


async def test_an_expired_session_is_refreshed_once_and_the_rotated_refresh_token_is_kept(rig: Rig) -> None:
    rig.server.script(
        "/services/data/v68.0/sobjects/",
        json_reply(
            [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], status=401
        ),
        json_reply(
            {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [{"name": "Account", "keyPrefix": "001"}]}
        ),
    )
    rig.server.script("/services/oauth2/token", refreshed())
    org = await rig.gateway.org(ORG)
    result = await org.describe_global(if_modified_since=None)
    assert result is not None and result.sobjects[0]["name"] == "Account"
    _, token_body = rig.server.seen("/services/oauth2/token")[0]
    assert "grant_type=refresh_token" in token_body and "refresh_token=5Aep-old-refresh" in token_body
    stored = rig.store.orgs[ORG[:15]]
    assert stored.access_token == "00Dnew!token" and stored.refresh_token == "5Aep-rotated"
    second, _ = rig.server.seen("/services/data/v68.0/sobjects/")[1]
    assert second.headers["Authorization"] == "Bearer 00Dnew!token"


async def test_a_revoked_grant_marks_the_org_needs_reauth_and_raises_authorization_revoked(rig: Rig) -> None:
    rig.server.script(
        "/services/data/v68.0/sobjects/",
        json_reply(
            [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], status=401
        ),
    )
    rig.server.script(
        "/services/oauth2/token",
        json_reply(
            {"error": "invalid_grant", "error_description": "expired access/refresh token"}, status=400
        ),
    )
    org = await rig.gateway.org(ORG)
    with pytest.raises(AuthorizationRevoked):
        await org.describe_global(if_modified_since=None)
    assert rig.store.orgs[ORG[:15]].status is OrgStatus.NEEDS_REAUTH
    with pytest.raises(AuthorizationRevoked):
        await rig.gateway.org(ORG)


async def test_a_non_json_4xx_from_a_proxy_during_refresh_is_unavailable_not_revoked(rig: Rig) -> None:
    rig.server.script(
        "/services/data/v68.0/sobjects/",
        json_reply(
            [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], status=401
        ),
    )
    rig.server.script(
        "/services/oauth2/token",
        lambda _r, _b: web.Response(
            status=403, text="<html>Access denied by proxy</html>", content_type="text/html"
        ),
    )
    org = await rig.gateway.org(ORG)
    with pytest.raises(SalesforceUnavailable) as info:
        await org.describe_global(if_modified_since=None)
    assert info.value.retryable and "HTTP 403 without an OAuth error" in info.value.message
    assert rig.store.orgs[ORG[:15]].status is OrgStatus.OK


async def test_concurrent_refreshes_of_one_org_make_one_refresh_call(rig: Rig) -> None:
    invalid = json_reply(
        [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], status=401
    )

    def by_token(request: web.Request, body: str) -> web.Response:
        if request.headers["Authorization"].endswith("00Dold!token"):
            return invalid(request, body)
        return web.json_response({"sobjects": []})

    rig.server.script("/services/data/v68.0/sobjects/", by_token)
    rig.server.script("/services/oauth2/token", refreshed())
    orgs = [await rig.gateway.org(ORG) for _ in range(5)]
    await asyncio.gather(*(o.describe_global(if_modified_since=None) for o in orgs))
    assert len(rig.server.seen("/services/oauth2/token")) == 1


async def test_limits_5xx_and_timeouts_are_retryable_errors(rig: Rig) -> None:
    access = Access(rig.base, "00Dold!token")
    rig.server.script(
        "/services/data/v68.0/query/",
        json_reply(
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], status=403
        ),
    )
    with pytest.raises(RequestLimitExceeded):
        await rig.rest.query(access, "SELECT Id FROM User WHERE Username = 'x'")
    rig.server.scripts["/services/data/v68.0/query/"] = [
        lambda _r, _b: web.Response(status=503, text="<html>down")
    ]
    with pytest.raises(SalesforceUnavailable):
        await rig.rest.query(access, "SELECT Id FROM User WHERE Username = 'x'")

    async def slow(_r: web.Request, _b: str) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    rig.server.scripts["/services/data/v68.0/query/"] = [slow]
    with pytest.raises(SalesforceUnavailable, match=r"did not answer within 0\.5s"):
        await rig.rest.query(access, "SELECT Id FROM User WHERE Username = 'x'")


async def test_describe_global_sends_if_modified_since_and_understands_304(rig: Rig) -> None:
    rig.server.script("/services/data/v68.0/sobjects/", lambda _r, _b: web.Response(status=304))
    since = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    assert await rig.rest.describe_global(Access(rig.base, "00Dold!token"), if_modified_since=since) is None
    request, _ = rig.server.seen("/services/data/v68.0/sobjects/")[0]
    assert request.headers["If-Modified-Since"] == "Sun, 01 Nov 2026 08:30:00 GMT"


async def test_create_metadata_sends_a_typed_envelope_and_reads_a_blocked_save_result(rig: Rig) -> None:
    rig.server.script(
        "soap:createMetadata",
        soap_reply(
            "<createMetadataResponse><result><errors><fields>oauthConfig</fields><message>Connected App creation is "
            "restricted in this org</message><statusCode>FIELD_INTEGRITY_EXCEPTION</statusCode></errors>"
            "<fullName>sfc_c1_1</fullName><success>false</success></result></createMetadataResponse>"
        ),
    )
    org = await rig.gateway.org(ORG)
    spec = apps.AppSpec("sfc_c1_1", "Label", "a@x.com", "https://b/cb", "MIIB", "sfc_c1_1", "sfcKey12345678")
    result = await org.create_connected_app(spec)
    assert result.outcome.value == "blocked" and "restricted" in result.message
    _, body = rig.server.seen("soap:createMetadata")[0]
    doc = etree.fromstring(body.encode())
    ns = {"m": "http://soap.sforce.com/2006/04/metadata", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
    assert doc.xpath("//m:sessionId/text()", namespaces=ns) == ["00Dold!token"]
    meta = doc.xpath("//m:createMetadata/m:metadata", namespaces=ns)[0]
    assert meta.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "met:ConnectedApp"
    assert next(etree.QName(c).localname for c in meta) == "fullName"
    assert meta.xpath("m:oauthConfig/m:isAdminApproved/text()", namespaces=ns) == ["true"]
    assert meta.xpath("m:oauthConfig/m:scopes/text()", namespaces=ns) == ["Api", "RefreshToken"]


async def test_a_soap_invalid_session_fault_refreshes_then_reads_the_app_back(rig: Rig) -> None:
    record = (
        '<readMetadataResponse><result><records xsi:type="ConnectedApp"><fullName>sfc_c1_1</fullName>'
        "<contactEmail>a@x.com</contactEmail><label>L</label><oauthConfig><callbackUrl>https://b/cb</callbackUrl>"
        "<certificate>MIIB</certificate><consumerKey>sfcKey12345678</consumerKey><isAdminApproved>true"
        "</isAdminApproved><scopes>Api</scopes><scopes>RefreshToken</scopes></oauthConfig>"
        "<permissionSetName>sfc_c1_1</permissionSetName></records></result></readMetadataResponse>"
    )
    rig.server.script(
        "soap:readMetadata",
        lambda _r, _b: web.Response(text=SOAP_FAULT, status=500, content_type="text/xml"),
        soap_reply(record),
    )
    rig.server.script("/services/oauth2/token", refreshed())
    org = await rig.gateway.org(ORG)
    found = await org.read_app("connected_app", "sfc_c1_1")
    assert found is not None
    assert found.consumer_key == "sfcKey12345678" and found.admin_approved and found.certificate == "MIIB"
    assert found.permission_sets == ("sfc_c1_1",)


async def test_a_missing_app_reads_back_as_none(rig: Rig) -> None:
    rig.server.script(
        "soap:readMetadata",
        soap_reply('<readMetadataResponse><result><records xsi:nil="true"/></result></readMetadataResponse>'),
    )
    org = await rig.gateway.org(ORG)
    assert await org.read_app("external_client_app", "sfc_nope_1") is None


async def test_an_eca_deploy_and_its_failed_status_with_component_failures(rig: Rig) -> None:
    rig.server.script(
        "soap:deploy", soap_reply("<deployResponse><result><done>false</done><id>0Af000000000001</id>"
                                  "<state>Queued</state></result></deployResponse>"),
    )  # fmt: skip
    rig.server.script(
        "soap:checkDeployStatus",
        soap_reply(
            "<checkDeployStatusResponse><result><done>true</done><id>0Af000000000001</id><status>Failed</status>"
            "<success>false</success><details><componentFailures><componentType>ExternalClientApplication"
            "</componentType><fullName>sfc_c1_1</fullName><problem>External Client Apps are not enabled in this "
            "org</problem><problemType>Error</problemType></componentFailures></details></result>"
            "</checkDeployStatusResponse>"
        ),
    )
    org = await rig.gateway.org(ORG)
    spec = apps.AppSpec(
        "sfc_c1_1", "Label", "a@x.com", "https://b/cb", "MIIB", "sfc_c1_1", "", "0PS000000000001AAA"
    )
    deploy_id = await org.start_eca_deploy(spec)
    assert deploy_id == "0Af000000000001"
    status = await org.eca_deploy_status(deploy_id)
    assert status.done and not status.success
    assert apps.eca_unavailable(status.describe())
    _, body = rig.server.seen("soap:deploy")[0]
    assert "<met:singlePackage>true</met:singlePackage>" in body and "<met:ZipFile>UEsDB" in body


async def test_jwt_bearer_posts_a_signed_assertion_and_maps_refusals(rig: Rig) -> None:
    from builder.salesforce.certs import new_credential

    credential = new_credential("sfc_t")
    rig.server.script(
        "/services/oauth2/token",
        json_reply(
            {"error": "invalid_client_id", "error_description": "client identifier invalid"}, status=400
        ),
        refreshed("00Djwt!minted", refresh=None),
    )
    mint = {
        "token_host": rig.base, "consumer_key": "3MVGkey", "username": "a&b+c'd@x.com",
        "audience": "https://login.salesforce.com", "private_key_pem": credential.private_key_pem,
    }  # fmt: skip
    with pytest.raises(OAuthError) as info:
        await rig.gateway.mint_token(**mint)
    assert info.value.error == "invalid_client_id"
    token = await rig.gateway.mint_token(**mint)
    assert token.access_token == "00Djwt!minted" and token.refresh_token is None
    _, body = rig.server.seen("/services/oauth2/token")[1]
    form = dict(pair.split("=", 1) for pair in body.split("&"))
    assert form["grant_type"] == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
    claims = jwt.decode(form["assertion"], options={"verify_signature": False})
    assert claims["sub"] == "a&b+c'd@x.com" and claims["iss"] == "3MVGkey"


async def test_code_exchange_checks_the_signature_of_the_answer(rig: Rig) -> None:
    import base64
    import hashlib
    import hmac

    identity, issued = f"{rig.base}/id/{ORG}/005000000000001AAA", "1712345678901"
    signature = base64.b64encode(
        hmac.new(b"csecret", (identity + issued).encode(), hashlib.sha256).digest()
    ).decode()
    answer = {
        "access_token": "00Dcode!access", "refresh_token": "5Aep-first", "instance_url": rig.base, "id": identity,
        "issued_at": issued, "signature": signature, "scope": "api refresh_token", "token_type": "Bearer",
    }  # fmt: skip
    rig.server.script("/services/oauth2/token", json_reply(answer))
    token = await rig.gateway.oauth.exchange_code(login_url=rig.base, code="aPrx", verifier="v" * 128)
    assert token.org_id == ORG and token.refresh_token == "5Aep-first"
    _, body = rig.server.seen("/services/oauth2/token")[0]
    assert "code_verifier=" + "v" * 128 in body and "client_secret=csecret" in body
    rig.server.scripts["/services/oauth2/token"] = [
        json_reply({**answer, "signature": base64.b64encode(b"x" * 32).decode()})
    ]
    from builder.salesforce.oauth import SignatureMismatch

    with pytest.raises(SignatureMismatch):
        await rig.gateway.oauth.exchange_code(login_url=rig.base, code="aPrx", verifier="v" * 128)
