"""Hand-written SOAP envelopes (the shape the Builder sends) against the Metadata endpoint; all validated."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from lxml import etree
from salesforce_sim.testing import SimulatorURL, running_simulator

from tests.integration import sim_wsdl
from tests.integration.sim_support import (
    TIMEOUT,
    eca_zip,
    jwt_form,
    make_cert,
    mint_jwt,
    post_token,
    web_server_login,
)

pytestmark = pytest.mark.integration
KEY, CERT = make_cert()
BOT = "integration+bot@acme.example"
MD = "http://soap.sforce.com/2006/04/metadata"
NS = {"s": "http://schemas.xmlsoap.org/soap/envelope/", "m": MD}


def envelope(session: str, body: str, *, all_or_none: bool = False) -> bytes:
    extra = (
        "<met:AllOrNoneHeader><met:allOrNone>true</met:allOrNone></met:AllOrNoneHeader>"
        if all_or_none
        else ""
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:met="{MD}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Header><met:SessionHeader><met:sessionId>{session}</met:sessionId></met:SessionHeader>{extra}</soapenv:Header>"
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    ).encode()


def connected_app(name: str, **oauth: str) -> str:
    fields = "".join(f"<met:{k}>{v}</met:{k}>" for k, v in oauth.items())
    return (
        f'<met:metadata xsi:type="met:ConnectedApp"><met:fullName>{name}</met:fullName>'
        "<met:contactEmail>admin@acme.example</met:contactEmail><met:label>App</met:label>"
        f"<met:oauthConfig><met:callbackUrl>https://b.example/cb</met:callbackUrl><met:certificate>{CERT}</met:certificate>"
        f"{fields}<met:isAdminApproved>true</met:isAdminApproved><met:scopes>Api</met:scopes></met:oauthConfig>"
        "<met:permissionSetName>Sales_Ops</met:permissionSetName></met:metadata>"
    )


UNTYPED = connected_app("X_App").replace(' xsi:type="met:ConnectedApp"', "")


class Soap:
    def __init__(self, http: aiohttp.ClientSession, sim: SimulatorURL, login: dict[str, Any]) -> None:
        self.http, self.sim, self.login = http, sim, login
        self.url = f"{login['instance_url']}/services/Soap/m/68.0"

    async def call(
        self, body: str, *, url: str | None = None, session: str | None = None, **kw: Any
    ) -> tuple[int, etree._Element]:
        data = envelope(session or self.login["access_token"], body, **kw)
        async with self.http.post(
            url or self.url, data=data, headers={"Content-Type": "text/xml", "SOAPAction": '""'}
        ) as resp:
            text = await resp.read()
            if resp.content_type != "text/xml":
                return resp.status, etree.fromstring(b"<html/>")
            return resp.status, etree.fromstring(text)


@pytest.fixture
async def soap() -> AsyncIterator[tuple[Soap, list[tuple[bytes, bytes, int]]]]:
    exchanges: list[tuple[bytes, bytes, int]] = []
    async with running_simulator(soap_observer=lambda a, b, c: exchanges.append((a, b, c))) as sim:
        sim.state.auto_approve = True
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            yield Soap(http, sim, await web_server_login(http, sim, "admin@acme.example")), exchanges
    for request, response, _ in exchanges:
        sim_wsdl.validate(response)
        if b"<!--invalid-on-purpose-->" not in request:
            sim_wsdl.validate(request)


def fault(doc: etree._Element) -> tuple[str, str]:
    return doc.findtext(".//faultcode", namespaces=NS) or "", doc.findtext(
        ".//faultstring", namespaces=NS
    ) or ""


async def test_a_deploy_stays_in_progress_for_deploy_seconds(soap) -> None:
    client, _ = soap
    client.sim.state.org("acme").knobs.deploy_seconds = 60
    zipped = base64.b64encode(eca_zip("Later_Eca", CERT)).decode()
    options = "".join(
        f"<met:{k}>{v}</met:{k}>"
        for k, v in [
            ("allowMissingFiles", "false"),
            ("autoUpdatePackage", "false"),
            ("checkOnly", "false"),
            ("ignoreWarnings", "false"),
            ("performRetrieve", "false"),
            ("purgeOnDelete", "false"),
            ("rollbackOnError", "true"),
            ("singlePackage", "true"),
            ("testLevel", "NoTestRun"),
        ]
    )
    status, doc = await client.call(
        f"<met:deploy><met:ZipFile>{zipped}</met:ZipFile><met:DeployOptions>{options}</met:DeployOptions></met:deploy>"
    )
    assert status == 200
    deploy_id = doc.findtext(".//m:result/m:id", namespaces=NS)
    check = f"<met:checkDeployStatus><met:asyncProcessId>{deploy_id}</met:asyncProcessId><met:includeDetails>true</met:includeDetails></met:checkDeployStatus>"
    _, doc = await client.call(check)
    assert (doc.findtext(".//m:status", namespaces=NS), doc.findtext(".//m:done", namespaces=NS)) == (
        "InProgress",
        "false",
    )
    assert client.sim.state.org("acme").apps == {}
    client.sim.state.advance(61)
    _, doc = await client.call(check)
    assert (doc.findtext(".//m:status", namespaces=NS), doc.findtext(".//m:success", namespaces=NS)) == (
        "Succeeded",
        "true",
    )
    assert "Later_Eca" in client.sim.state.org("acme").apps


async def test_all_or_none_rolls_back_every_component(soap) -> None:
    client, _ = soap
    body = f"<met:createMetadata>{connected_app('Good_App')}{connected_app('Bad_App', consumerKey='not alnum!')}</met:createMetadata>"
    _, doc = await client.call(body, all_or_none=True)
    codes = [e.findtext("m:statusCode", namespaces=NS) for e in doc.iterfind(".//m:errors", namespaces=NS)]
    assert codes == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "FIELD_INTEGRITY_EXCEPTION"]
    assert client.sim.state.org("acme").apps == {}
    _, doc = await client.call(body)
    assert [r.findtext("m:success", namespaces=NS) for r in doc.iterfind(".//m:result", namespaces=NS)] == [
        "true",
        "false",
    ]


async def test_the_admin_approval_pitfall_can_be_reproduced(soap) -> None:
    client, _ = soap
    client.sim.state.org("acme").knobs.drop_admin_approval_on_create = True
    await client.call(f"<met:createMetadata>{connected_app('Pitfall_App')}</met:createMetadata>")
    _, doc = await client.call(
        "<met:readMetadata><met:type>ConnectedApp</met:type><met:fullNames>Pitfall_App</met:fullNames></met:readMetadata>"
    )
    record = doc.find(".//m:records", namespaces=NS)
    assert record is not None and record.findtext("m:fullName", namespaces=NS) == "Pitfall_App"
    assert (
        record.find(".//m:isAdminApproved", namespaces=NS) is None
        and record.find("m:permissionSetName", namespaces=NS) is None
    )


async def test_a_connected_app_deploy_is_refused_in_a_blocked_org(soap) -> None:
    import io
    import zipfile

    client, _ = soap
    client.sim.state.org("acme").knobs.connected_apps_blocked = True
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(
            "unpackaged/package.xml",
            f'<Package xmlns="{MD}"><types><members>*</members><name>ConnectedApp</name></types><version>68.0</version></Package>',
        )
        z.writestr(
            "unpackaged/connectedApps/Zip_App.connectedApp",
            f'<ConnectedApp xmlns="{MD}"><contactEmail>a@b.c</contactEmail><label>Z</label><oauthConfig><callbackUrl>https://z/cb</callbackUrl><scopes>Api</scopes></oauthConfig></ConnectedApp>',
        )
    zipped = base64.b64encode(buf.getvalue()).decode()
    options = "<met:allowMissingFiles>false</met:allowMissingFiles><met:autoUpdatePackage>false</met:autoUpdatePackage><met:checkOnly>false</met:checkOnly><met:ignoreWarnings>false</met:ignoreWarnings><met:performRetrieve>false</met:performRetrieve><met:purgeOnDelete>false</met:purgeOnDelete><met:rollbackOnError>true</met:rollbackOnError><met:singlePackage>false</met:singlePackage><met:testLevel>NoTestRun</met:testLevel>"
    _, doc = await client.call(
        f"<met:deploy><met:ZipFile>{zipped}</met:ZipFile><met:DeployOptions>{options}</met:DeployOptions></met:deploy>"
    )
    deploy_id = doc.findtext(".//m:id", namespaces=NS)
    _, doc = await client.call(
        f"<met:checkDeployStatus><met:asyncProcessId>{deploy_id}</met:asyncProcessId><met:includeDetails>true</met:includeDetails></met:checkDeployStatus>"
    )
    assert doc.findtext(".//m:status", namespaces=NS) == "Failed"
    failure = doc.find(".//m:componentFailures", namespaces=NS)
    assert (
        failure is not None
        and failure.findtext("m:fileName", namespaces=NS) == "unpackaged/connectedApps/Zip_App.connectedApp"
    )
    assert "Connected App creation is restricted" in (failure.findtext("m:problem", namespaces=NS) or "")


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            "<met:listMetadata><!--invalid-on-purpose--></met:listMetadata>",
            "soapenv:Client",
            "No operation available",
        ),
        (
            f"<met:createMetadata>{connected_app('X_App').replace('<met:label>', '<met:nonsense>1</met:nonsense><met:label>')}<!--invalid-on-purpose--></met:createMetadata>",
            "soapenv:Client",
            "invalid at this location",
        ),
        (
            f"<met:createMetadata>{connected_app('X_App').replace('>Api<', '>Everything<')}<!--invalid-on-purpose--></met:createMetadata>",
            "soapenv:Client",
            "not a valid value for the enum",
        ),
        (
            "<met:createMetadata>" + UNTYPED + "<!--invalid-on-purpose--></met:createMetadata>",
            "soapenv:Client",
            "xsi:type",
        ),
        (
            "<met:readMetadata><met:type>CustomObject</met:type><met:fullNames>A__c</met:fullNames></met:readMetadata>",
            "sf:INVALID_TYPE",
            "CustomObject",
        ),
        (
            "<met:checkDeployStatus><met:asyncProcessId>0AfSm0000000000AAA</met:asyncProcessId><met:includeDetails>true</met:includeDetails></met:checkDeployStatus>",
            "sf:INVALID_ID_FIELD",
            "Invalid id",
        ),
    ],
)
async def test_requests_the_simulator_cannot_take_are_faults(soap, body, code, message) -> None:
    client, _ = soap
    status, doc = await client.call(body)
    got_code, got_message = fault(doc)
    assert status == 500 and got_code == code and message in got_message


async def test_version_session_and_org_faults(soap) -> None:
    client, _ = soap
    read = "<met:readMetadata><met:type>ConnectedApp</met:type><met:fullNames>A</met:fullNames></met:readMetadata>"
    status, doc = await client.call(read, url=client.url.replace("68.0", "20.0"))
    assert status == 500 and fault(doc)[0] == "sf:UNSUPPORTED_API_VERSION"
    status, doc = await client.call(read, url=f"{client.sim}/org/globex/services/Soap/m/68.0")
    assert status == 500 and fault(doc) == (
        "sf:INVALID_SESSION_ID",
        "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session",
    )
    detail = doc.find(".//s:Fault/detail/m:UnexpectedErrorFault", namespaces=NS)
    assert detail is not None
    assert [(etree.QName(c).localname, c.text) for c in detail] == [
        ("exceptionCode", "INVALID_SESSION_ID"),
        ("exceptionMessage", "Invalid Session ID found in SessionHeader: Illegal Session"),
    ]
    status, doc = await client.call(read, url=f"{client.sim}/services/Soap/m/68.0/")
    assert status == 200  # the login host resolves the org from the session, like an instance host


async def test_injected_5xx_reach_soap_callers_too(soap) -> None:
    client, exchanges = soap
    client.sim.state.org("acme").knobs.fail_next_5xx = 1
    status, _ = await client.call(
        "<met:readMetadata><met:type>ConnectedApp</met:type><met:fullNames>A</met:fullNames></met:readMetadata>"
    )
    assert status == 503
    exchanges.clear()  # the 503 page is HTML, not SOAP
    status, doc = await client.call(
        "<met:readMetadata><met:type>ConnectedApp</met:type><met:fullNames>A</met:fullNames></met:readMetadata>"
    )
    assert status == 200 and re.search(rb"<records/>", etree.tostring(doc))


def _eca_part(type_name: str, name: str, fields: str) -> str:
    return (
        f'<met:metadata xsi:type="met:{type_name}"><met:fullName>{name}</met:fullName>{fields}</met:metadata>'
    )


async def test_external_client_apps_can_also_be_made_with_create_metadata_unless_disabled(soap) -> None:
    client, _ = soap
    eca = _eca_part(
        "ExternalClientApplication",
        "Crud_Eca",
        "<met:contactEmail>a@acme.example</met:contactEmail><met:label>Crud</met:label>",
    )
    client.sim.state.org("acme").knobs.eca_enabled = False
    _, doc = await client.call(f"<met:createMetadata>{eca}</met:createMetadata>")
    assert doc.findtext(".//m:statusCode", namespaces=NS) == "INVALID_TYPE"
    client.sim.state.org("acme").knobs.eca_enabled = True
    _, doc = await client.call(f"<met:createMetadata>{eca}</met:createMetadata>")
    assert doc.findtext(".//m:success", namespaces=NS) == "true"
    glbl = _eca_part(
        "ExtlClntAppGlobalOauthSettings",
        "Crud_Eca_glbloauth",
        f"<met:callbackUrl>https://c.example/cb</met:callbackUrl><met:certificate>{CERT}</met:certificate>"
        "<met:consumerKey>CrudEcaConsumerKey01</met:consumerKey><met:externalClientApplication>Crud_Eca</met:externalClientApplication>",
    )
    _, doc = await client.call(f"<met:createMetadata>{glbl}</met:createMetadata>")
    assert doc.findtext(".//m:success", namespaces=NS) == "true"
    app = client.sim.state.org("acme").apps["Crud_Eca"]
    assert (
        app.consumer_key == "CrudEcaConsumerKey01" and app.admin_approved is False
    )  # generated policy: self-authorized
    _, doc = await client.call(
        "<met:deleteMetadata><met:type>ExternalClientApplication</met:type><met:fullNames>Crud_Eca</met:fullNames></met:deleteMetadata>"
    )
    assert doc.findtext(".//m:success", namespaces=NS) == "true"
    assert client.sim.state.org("acme").metadata == {
        "ExternalClientApplication": {},
        "ExtlClntAppGlobalOauthSettings": {},
        "ExtlClntAppOauthConfigurablePolicies": {},
    }


async def _jwt_status(client: Soap, consumer_key: str) -> tuple[int, dict[str, Any]]:
    assertion = mint_jwt(
        KEY, iss=consumer_key, sub=BOT, aud="https://login.salesforce.com", now=client.sim.state.now()
    )
    return await post_token(client.http, client.sim, jwt_form(assertion))


async def test_a_connected_app_made_by_create_metadata_propagates_for_the_delay_set_at_creation(soap) -> None:
    client, _ = soap
    state = client.sim.state
    org = state.org("acme")
    state.assign(org, org.user_by_username(BOT).id, org.permission_set_by_name("Sales_Ops").id)
    org.knobs.propagation_delay_seconds = 120
    _, doc = await client.call(
        f"<met:createMetadata>{connected_app('Fresh_App', consumerKey='FreshAppKey0001')}</met:createMetadata>"
    )
    assert doc.findtext(".//m:success", namespaces=NS) == "true"
    status, body = await _jwt_status(client, "FreshAppKey0001")
    assert (status, body) == (
        400,
        {"error": "invalid_client_id", "error_description": "client identifier invalid"},
    )
    org.knobs.propagation_delay_seconds = 0  # lowering the knob does not shorten a running propagation
    assert (await _jwt_status(client, "FreshAppKey0001"))[0] == 400
    state.advance(121)
    status, body = await _jwt_status(client, "FreshAppKey0001")
    assert status == 200, body
    org.knobs.propagation_delay_seconds = 600  # raising it later does not hide an app already known
    status, body = await _jwt_status(client, "FreshAppKey0001")
    assert status == 200, body


async def test_an_expired_session_is_an_invalid_session_fault(soap) -> None:
    client, _ = soap
    client.sim.state.org("acme").knobs.session_timeout_seconds = 60
    read = "<met:readMetadata><met:type>ConnectedApp</met:type><met:fullNames>A</met:fullNames></met:readMetadata>"
    status, _ = await client.call(read)
    assert status == 200
    client.sim.state.advance(61)  # the token is untouched, only idle past the timeout
    status, doc = await client.call(read)
    assert status == 500 and fault(doc) == (
        "sf:INVALID_SESSION_ID",
        "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session",
    )
    assert doc.findtext(".//m:exceptionCode", namespaces=NS) == "INVALID_SESSION_ID"


@pytest.mark.parametrize(
    ("policy", "missing"),
    [
        (
            "<met:oauthPolicy><met:ipRelaxation>ENFORCE</met:ipRelaxation></met:oauthPolicy>",
            "refreshTokenPolicy",
        ),
        (
            "<met:oauthPolicy><met:refreshTokenPolicy>infinite</met:refreshTokenPolicy></met:oauthPolicy>",
            "ipRelaxation",
        ),
    ],
)
async def test_a_create_without_a_field_the_wsdl_requires_is_a_save_result_error(
    soap, policy, missing
) -> None:
    client, _ = soap
    app = connected_app("Half_App").replace("<met:permissionSetName>", f"{policy}<met:permissionSetName>")
    # The request itself breaks the schema (as a lenient client could send it).
    _, doc = await client.call(f"<met:createMetadata>{app}<!--invalid-on-purpose--></met:createMetadata>")
    result = doc.find(".//m:result", namespaces=NS)
    assert result is not None
    assert [
        result.findtext(f"m:{n}", namespaces=NS)
        for n in ("success", "errors/m:statusCode", "errors/m:fields")
    ] == ["false", "REQUIRED_FIELD_MISSING", missing]
    assert result.findtext("m:errors/m:message", namespaces=NS) == f"Required field is missing: {missing}"
    assert "Half_App" not in client.sim.state.org("acme").metadata.get("ConnectedApp", {})
    _, doc = await client.call(
        "<met:readMetadata><met:type>ConnectedApp</met:type><met:fullNames>Half_App</met:fullNames></met:readMetadata>"
    )
    assert re.search(rb"<records/>", etree.tostring(doc))


async def test_a_complete_oauth_policy_is_stored_and_read_back_schema_valid(soap) -> None:
    client, _ = soap
    policy = "<met:oauthPolicy><met:ipRelaxation>ENFORCE</met:ipRelaxation><met:refreshTokenPolicy>infinite</met:refreshTokenPolicy></met:oauthPolicy>"
    app = connected_app("Whole_App").replace("<met:permissionSetName>", f"{policy}<met:permissionSetName>")
    _, doc = await client.call(f"<met:createMetadata>{app}</met:createMetadata>")
    assert doc.findtext(".//m:success", namespaces=NS) == "true"
    _, doc = await client.call(
        "<met:readMetadata><met:type>ConnectedApp</met:type><met:fullNames>Whole_App</met:fullNames></met:readMetadata>"
    )
    assert doc.findtext(".//m:oauthPolicy/m:refreshTokenPolicy", namespaces=NS) == "infinite"


def test_the_required_marks_match_the_wsdl() -> None:
    from salesforce_sim.mdtypes import REQUIRED

    root = etree.parse(str(sim_wsdl.WSDL)).getroot().find(f".//{{{sim_wsdl.XSD}}}schema")
    assert root is not None
    for type_name, required in REQUIRED.items():
        declared = root.find(f"{{{sim_wsdl.XSD}}}complexType[@name='{type_name}']")
        assert declared is not None, type_name
        wsdl_required = [
            el.get("name") for el in declared.iter(f"{{{sim_wsdl.XSD}}}element") if el.get("minOccurs") != "0"
        ]
        assert required == wsdl_required, type_name
