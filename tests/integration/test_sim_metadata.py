"""simple-salesforce (REST + its WSDL/zeep Metadata client) against the simulator over TLS.

Every SOAP request and response the simulator handles in these tests is validated against the SOAP 1.1
envelope schema and the XSD inside the WSDL simple-salesforce bundles (see sim_wsdl.py).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import zeep
from salesforce_sim.testing import SimulatorURL, simulator_in_thread
from simple_salesforce import Salesforce
from zeep.exceptions import Fault

from tests.integration import sim_wsdl
from tests.integration.sim_support import (
    BUILDER_ID,
    BUILDER_SECRET,
    CALLBACK,
    eca_zip,
    jwt_form,
    make_cert,
    mint_jwt,
    pkce_pair,
)

pytestmark = pytest.mark.integration
KEY, CERT = make_cert()
LOGIN = "https://login.salesforce.com"
BOT = "integration+bot@acme.example"


@dataclass
class Sim:
    url: SimulatorURL
    http: requests.Session
    exchanges: list[tuple[bytes, bytes, int]] = field(default_factory=list)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.http.request(method, f"{self.url}/__sim{path}", json=body, timeout=10)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def login(self, username: str = "admin@acme.example") -> dict[str, Any]:
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": BUILDER_ID,
            "redirect_uri": CALLBACK,
            "code_challenge": challenge,
            "login_hint": username,
        }
        resp = self.http.get(
            f"{self.url}/services/oauth2/authorize", params=params, allow_redirects=False, timeout=10
        )
        code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": BUILDER_ID,
            "client_secret": BUILDER_SECRET,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        }
        token = self.http.post(f"{self.url}/services/oauth2/token", data=form, timeout=10)
        assert token.status_code == 200, token.text
        return dict(token.json())

    def salesforce(self, login: dict[str, Any] | None = None) -> Salesforce:
        login = login or self.login()
        return Salesforce(
            instance_url=login["instance_url"],
            session_id=login["access_token"],
            session=self.http,
            version="68.0",
        )

    def jwt(self, consumer_key: str, sub: str = BOT) -> requests.Response:
        now = float(self.admin("GET", "/state")["now"])
        assertion = mint_jwt(KEY, iss=consumer_key, sub=sub, aud=LOGIN, now=now)
        return self.http.post(f"{self.url}/services/oauth2/token", data=jwt_form(assertion), timeout=10)


def _validate_exchanges(exchanges: list[tuple[bytes, bytes, int]]) -> None:
    for request, response, _status in exchanges:
        try:
            sim_wsdl.validate(request)
        except AssertionError:
            # simple-salesforce's deploy template writes Python booleans ("True"/"False") into DeployOptions,
            # which xsd:boolean does not allow; that client defect is the only deviation tolerated here.
            assert b"<met:deploy>" in request, request[:400]
            sim_wsdl.validate(request.replace(b">True<", b">true<").replace(b">False<", b">false<"))
        sim_wsdl.validate(response)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sim]:
    exchanges: list[tuple[bytes, bytes, int]] = []
    with simulator_in_thread(
        tls=True, soap_observer=lambda req, resp, status: exchanges.append((req, resp, status))
    ) as url:
        assert url.ca_file is not None
        # zeep (inside simple-salesforce's Metadata client) makes its own requests.Session: trust the
        # simulator's self-signed certificate through the standard requests variable.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", url.ca_file)
        http = requests.Session()
        http.verify = url.ca_file
        sim = Sim(url, http, exchanges)
        sim.admin("PATCH", "/settings", {"auto_approve": True})
        yield sim
        http.close()
    _validate_exchanges(exchanges)


def _connected_app(md: Any, name: str, **oauth: Any) -> Any:
    config = md.ConnectedAppOauthConfig(
        callbackUrl="https://builder.example/cb",
        certificate=CERT,
        isAdminApproved=True,
        scopes=["Api", "RefreshToken"],
        **oauth,
    )
    return md.ConnectedApp(
        fullName=name,
        label=name.replace("_", " "),
        contactEmail="admin@acme.example",
        oauthConfig=config,
        permissionSetName=["Sales_Ops"],
    )


def _assign_sales_ops(sf: Salesforce, username: str = BOT) -> None:
    user = sf.query(f"SELECT Id FROM User WHERE Username = '{username}'")["records"][0]["Id"]
    ps = sf.query("SELECT Id FROM PermissionSet WHERE Name = 'Sales_Ops'")["records"][0]["Id"]
    sf.PermissionSetAssignment.create({"AssigneeId": user, "PermissionSetId": ps})


def _deploy(sf: Salesforce, data: bytes) -> dict[str, Any]:
    started = sf.deploy(io.BytesIO(data), sandbox=False, testLevel="NoTestRun", tests="")
    assert started["state"] == "Queued"
    deadline = time.monotonic() + 10
    while True:
        status = sf.checkDeployStatus(started["asyncId"])
        if status["state"] not in ("Pending", "InProgress") or time.monotonic() > deadline:
            return dict(status)
        time.sleep(0.05)


def test_simple_salesforce_describe_lists_the_org_objects(sim: Sim) -> None:
    described = sim.salesforce().describe()
    names = {s["name"] for s in described["sobjects"]}
    assert {"User", "PermissionSet", "PermissionSetAssignment"} <= names


def test_simple_salesforce_creates_and_reads_a_connected_app_that_then_mints_jwt_tokens(sim: Sim) -> None:
    sf = sim.salesforce()
    md = sf.mdapi
    md.ConnectedApp.create(
        [
            _connected_app(
                md,
                "Acme_Integration",
                consumerKey="AcmeIntegrationKey0001",
                consumerSecret="AcmeIntegrationSecret01",
            )
        ]
    )
    got = md.ConnectedApp.read(["Acme_Integration"])
    assert got.fullName == "Acme_Integration" and got.contactEmail == "admin@acme.example"
    assert got.oauthConfig.consumerKey == "AcmeIntegrationKey0001"
    assert got.oauthConfig.consumerSecret is None
    assert got.oauthConfig.certificate == CERT and got.oauthConfig.isAdminApproved is True
    assert got.oauthConfig.scopes == ["Api", "RefreshToken"] and got.permissionSetName == ["Sales_Ops"]
    assert sim.jwt("AcmeIntegrationKey0001").json()["error"] == "invalid_app_access"  # not pre-authorized yet
    _assign_sales_ops(sf)
    token = sim.jwt("AcmeIntegrationKey0001")
    assert token.status_code == 200, token.text
    assert md.ConnectedApp.read(["No_Such_App"]) is None


def test_create_errors_are_save_results(sim: Sim) -> None:
    md = sim.salesforce().mdapi
    md.ConnectedApp.create([_connected_app(md, "First_App", consumerKey="SharedConsumerKey0001")])
    with pytest.raises(Exception, match=r"DUPLICATE_VALUE, The consumer key is already taken"):
        md.ConnectedApp.create([_connected_app(md, "Second_App", consumerKey="SharedConsumerKey0001")])
    with pytest.raises(Exception, match=r"INVALID_CROSS_REFERENCE_KEY"):
        bad = _connected_app(md, "Third_App")
        bad.permissionSetName = ["No_Such_Set"]
        md.ConnectedApp.create([bad])
    with pytest.raises(Exception, match=r"DUPLICATE_VALUE"):
        md.ConnectedApp.create([_connected_app(md, "First_App")])
    apps = sim.admin("GET", "/orgs/acme/apps")
    assert [a["fullName"] for a in apps["apps"]] == ["First_App"]


def test_a_blocked_org_refuses_connected_apps_but_deploys_external_client_apps(sim: Sim) -> None:
    sim.admin("PATCH", "/orgs/acme", {"connected_apps_blocked": True})
    sf = sim.salesforce()
    with pytest.raises(Exception, match=r"FIELD_INTEGRITY_EXCEPTION, Connected App creation is restricted"):
        sf.mdapi.ConnectedApp.create([_connected_app(sf.mdapi, "Blocked_App")])
    result = _deploy(sf, eca_zip("Acme_Eca", CERT))
    assert result["state"] == "Succeeded", result
    assert result["deployment_detail"]["deployed_count"] == "4"
    glbl = sf.mdapi.ExtlClntAppGlobalOauthSettings.read(["Acme_Eca_glbloauth"])
    assert glbl.certificate == CERT and glbl.consumerKey and glbl.consumerSecret is None
    policy = sf.mdapi.ExtlClntAppOauthConfigurablePolicies.read(["Acme_Eca_oauthPlcy"])
    assert policy.permittedUsersPolicyType == "AdminApprovedPreAuthorized"
    consumers = sf.restful("apps/oauth/credentials/Acme_Eca")["consumers"]
    assert consumers[0]["key"] == glbl.consumerKey
    key = sf.restful(f"apps/oauth/credentials/Acme_Eca/{consumers[0]['id']}")
    assert key == {"key": glbl.consumerKey}
    _assign_sales_ops(sf)
    token = sim.jwt(glbl.consumerKey)
    assert token.status_code == 200, token.text
    assert [a["kind"] for a in sim.admin("GET", "/orgs/acme/apps")["apps"]] == ["external_client_app"]


def test_a_failed_deploy_rolls_everything_back(sim: Sim) -> None:
    sf = sim.salesforce()
    result = _deploy(sf, eca_zip("Broken_Eca", CERT, permission_set="No_Such_Set"))
    assert result["state"] == "Failed"
    errors = result["deployment_detail"]["errors"]
    assert errors == [
        {
            "type": "ExtlClntAppOauthConfigurablePolicies",
            "file": "extlClntAppOauthPolicies/Broken_Eca_oauthPlcy.ecaOauthPlcy",
            "status": "Error",
            "message": "Permission set 'No_Such_Set' doesn't exist",
        }
    ]
    assert sim.admin("GET", "/orgs/acme/apps")["count"] == 0
    assert sf.mdapi.ExternalClientApplication.read(["Broken_Eca"]) is None


def test_the_oauth_policies_are_generated_when_omitted(sim: Sim) -> None:
    sf = sim.salesforce()
    assert _deploy(sf, eca_zip("Plain_Eca", CERT, with_policy=False))["state"] == "Succeeded"
    policy = sf.mdapi.ExtlClntAppOauthConfigurablePolicies.read(["Plain_Eca_oauthPlcy"])
    assert policy.permittedUsersPolicyType == "AllSelfAuthorized"


def test_propagation_delay_applies_to_a_deployed_external_client_app(sim: Sim) -> None:
    sim.admin("PATCH", "/orgs/acme", {"propagation_delay_seconds": 300})
    sf = sim.salesforce()
    _assign_sales_ops(sf)
    assert _deploy(sf, eca_zip("Slow_Eca", CERT))["state"] == "Succeeded"
    key = sf.mdapi.ExtlClntAppGlobalOauthSettings.read(["Slow_Eca_glbloauth"]).consumerKey
    early = sim.jwt(key)
    assert (early.status_code, early.json()["error"]) == (400, "invalid_client_id")
    sim.admin("POST", "/clock", {"advance_seconds": 301})
    assert sim.jwt(key).status_code == 200
    sim.admin("PATCH", "/orgs/acme", {"propagation_delay_seconds": 900})
    assert sim.jwt(key).status_code == 200  # a later, longer delay does not hide a propagated app


def test_deleting_an_external_client_app_cascades_and_revokes_its_tokens(sim: Sim) -> None:
    sf = sim.salesforce()
    _assign_sales_ops(sf)
    assert _deploy(sf, eca_zip("Gone_Eca", CERT))["state"] == "Succeeded"
    key = sf.mdapi.ExtlClntAppGlobalOauthSettings.read(["Gone_Eca_glbloauth"]).consumerKey
    token = sim.jwt(key).json()["access_token"]
    sf.mdapi.ExternalClientApplication.delete(["Gone_Eca"])
    assert sf.mdapi.ExtlClntAppGlobalOauthSettings.read(["Gone_Eca_glbloauth"]) is None
    assert sim.admin("GET", "/orgs/acme")["metadata"] == {}
    probe = sim.http.get(
        f"{sim.url}/org/acme/services/data/v68.0/limits",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert probe.status_code == 401
    with pytest.raises(
        Exception,
        match=r"INVALID_CROSS_REFERENCE_KEY, In field: fullName - no ExternalClientApplication named Gone_Eca found",
    ):
        sf.mdapi.ExternalClientApplication.delete(["Gone_Eca"])


def test_permission_sets_through_the_metadata_api(sim: Sim) -> None:
    md = sim.salesforce().mdapi
    md.PermissionSet.create(
        [md.PermissionSet(fullName="Conn_Perm", label="Connection", description="made by a test")]
    )
    got = md.PermissionSet.read(["Conn_Perm"])
    assert (got.fullName, got.label, got.description) == ("Conn_Perm", "Connection", "made by a test")
    md.PermissionSet.delete(["Conn_Perm"])
    assert md.PermissionSet.read(["Conn_Perm"]) is None


def test_soap_faults_for_a_bad_session_and_the_api_limit(sim: Sim) -> None:
    login = sim.login()
    bad = sim.salesforce({**login, "access_token": login["access_token"][:-4] + "XXXX"})
    with pytest.raises(Fault) as fault:
        bad.mdapi.ConnectedApp.read(["Anything"])
    assert fault.value.code.endswith("INVALID_SESSION_ID")
    assert "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader" in fault.value.message
    used = sim.admin("GET", "/orgs/acme")["knobs"]["api_requests_used"]
    sim.admin("PATCH", "/orgs/acme", {"api_limit": used})
    with pytest.raises(Fault) as fault:
        sim.salesforce(login).mdapi.ConnectedApp.read(["Anything"])
    assert fault.value.code.endswith("REQUEST_LIMIT_EXCEEDED")


def test_a_zeep_built_deploy_is_schema_valid_end_to_end(sim: Sim) -> None:
    login = sim.login()
    client = zeep.Client(sim_wsdl.WSDL.as_uri(), transport=zeep.Transport(session=sim.http))
    service = client.create_service(
        "{http://soap.sforce.com/2006/04/metadata}MetadataBinding",
        f"{login['instance_url']}/services/Soap/m/68.0",
    )
    header = client.get_element("ns0:SessionHeader")(sessionId=login["access_token"])
    options = client.get_type("ns0:DeployOptions")(
        allowMissingFiles=False,
        autoUpdatePackage=False,
        checkOnly=False,
        ignoreWarnings=False,
        performRetrieve=False,
        purgeOnDelete=False,
        rollbackOnError=True,
        singlePackage=True,
        testLevel="NoTestRun",
    )
    started = service.deploy(ZipFile=eca_zip("Zeep_Eca", CERT), DeployOptions=options, _soapheaders=[header])
    assert (started.done, started.state) == (False, "Queued")
    reply = service.checkDeployStatus(asyncProcessId=started.id, includeDetails=True, _soapheaders=[header])
    result = reply.body.result  # checkDeployStatus declares an output header, so zeep answers {header, body}
    assert (result.done, result.status, result.success) == (True, "Succeeded", True)
    assert {m.fullName for m in result.details.componentSuccesses} == {
        "Zeep_Eca",
        "Zeep_Eca_glbloauth",
        "Zeep_Eca_oauth",
        "Zeep_Eca_oauthPlcy",
        "package.xml",
    }
    assert len(sim.exchanges) == 2


def test_every_captured_exchange_validates_and_a_broken_one_would_not(sim: Sim) -> None:
    md = sim.salesforce().mdapi
    md.ConnectedApp.create([_connected_app(md, "Checked_App")])
    md.ConnectedApp.read(["Checked_App"])
    md.ConnectedApp.delete(["Checked_App"])
    assert len(sim.exchanges) == 3
    _validate_exchanges(sim.exchanges)
    _request, response, _ = sim.exchanges[0]
    broken = response.replace(b"<success>true</success>", b"")
    with pytest.raises(AssertionError, match="does not validate"):
        sim_wsdl.validate(broken)
