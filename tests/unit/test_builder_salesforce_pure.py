"""Pure parts of the Builder's Salesforce adapter: names, quoting, PKCE, signatures, JWT, certs, ECA zip."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import string
import time
import zipfile

import jwt
import pytest
from builder.ports import AppReadback
from builder.provisioning import kinds_to_try, verify_readback
from builder.salesforce import apps, certs, oauth
from builder.salesforce.errors import (
    InvalidSession,
    RequestLimitExceeded,
    SalesforceApiError,
    SalesforceUnavailable,
    rest_error,
    soap_fault,
)
from builder.salesforce.jwt import audience_for, make_assertion
from builder.salesforce.rest import soql_quote, soql_select
from builder.store import ConnectionRecord
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from shared.contracts.base import CONNECTION_ID
from shared.errors import PermanentError

pytestmark = pytest.mark.unit
API_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|_(?!_))*[A-Za-z0-9]$")
CREDENTIAL = certs.new_credential("sfc_test")


@given(st.from_regex(CONNECTION_ID, fullmatch=True))
def test_api_names_are_valid_deterministic_and_short_for_any_connection_id(connection_id: str) -> None:
    name = apps.api_name(connection_id)
    assert API_NAME.match(name), name
    assert len(name) <= 37
    assert name == apps.api_name(connection_id)


def test_connection_ids_differing_only_in_punctuation_get_different_names() -> None:
    assert apps.api_name("a-b") != apps.api_name("a_b")


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("o'brien+ops&co@acme.com", "'o\\'brien+ops&co@acme.com'"),
        ("back\\slash@x.com", "'back\\\\slash@x.com'"),
        ("line\nbreak", "'line\\nbreak'"),
    ],
)
def test_soql_literals_escape_quotes_backslashes_and_control_characters(value: str, literal: str) -> None:
    assert soql_quote(value) == literal


def test_soql_select_quotes_every_value() -> None:
    assert soql_select("Id", "User", Username="a'b") == "SELECT Id FROM User WHERE Username = 'a\\'b'"


def test_the_pkce_verifier_uses_the_base64url_alphabet_and_the_challenge_is_s256() -> None:
    verifier = oauth.new_pkce_verifier()
    assert len(verifier) == 128
    assert set(verifier) <= set(string.ascii_letters + string.digits + "-_")
    # RFC 7636 appendix B
    assert (
        oauth.pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_the_authorize_url_carries_state_challenge_and_scopes() -> None:
    url = oauth.authorize_url(
        login_url="https://login.salesforce.com/", client_id="cid", redirect_uri="https://b/cb", state="st",
        verifier="v" * 43,
    )  # fmt: skip
    assert url.startswith("https://login.salesforce.com/services/oauth2/authorize?response_type=code")
    assert "code_challenge_method=S256" in url and "state=st" in url and "scope=api+refresh_token" in url


def _signed(secret: str, identity: str, issued_at: str) -> str:
    return base64.b64encode(
        hmac.new(secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
    ).decode()


def test_a_token_response_signature_is_checked_against_id_and_issued_at() -> None:
    identity, issued = "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P", "1278448832702"
    good = oauth.TokenResponse("00Dx!tok", "https://i", identity, issued, _signed("secret", identity, issued))
    oauth.verify_signature(good, "secret")
    assert good.org_id == "00Dx0000000BV7z" and good.user_id == "005x00000012Q9P"
    forged = oauth.TokenResponse("00Dx!tok", "https://i", identity + "X", issued, good.signature)
    with pytest.raises(oauth.SignatureMismatch):
        oauth.verify_signature(forged, "secret")
    with pytest.raises(oauth.SignatureMismatch):
        oauth.verify_signature(good, "another-secret")


def test_the_jwt_assertion_is_rs256_with_integer_exp_under_three_minutes() -> None:
    now = time.time()
    assertion = make_assertion(
        consumer_key="3MVGkey", username="a+b@x.com", audience="https://login.salesforce.com",
        private_key_pem=CREDENTIAL.private_key_pem, now=now,
    )  # fmt: skip
    assert jwt.get_unverified_header(assertion)["alg"] == "RS256"
    public = x509.load_pem_x509_certificate(CREDENTIAL.certificate_pem.encode()).public_key()
    claims = jwt.decode(assertion, public, algorithms=["RS256"], audience="https://login.salesforce.com")  # type: ignore[arg-type]
    assert claims["iss"] == "3MVGkey" and claims["sub"] == "a+b@x.com"
    assert isinstance(claims["exp"], int) and 0 < claims["exp"] - int(now) <= 180


def test_the_audience_defaults_by_org_type_and_can_be_overridden() -> None:
    assert audience_for(is_sandbox=False, override=None) == "https://login.salesforce.com"
    assert audience_for(is_sandbox=True, override=None) == "https://test.salesforce.com"
    assert (
        audience_for(is_sandbox=True, override="https://acme.my.salesforce.com")
        == "https://acme.my.salesforce.com"
    )


def test_a_credential_is_rsa_2048_with_a_self_signed_certificate_whose_body_round_trips() -> None:
    cert = x509.load_pem_x509_certificate(CREDENTIAL.certificate_pem.encode())
    assert cert.issuer == cert.subject
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    body = CREDENTIAL.certificate_body
    assert "BEGIN" not in body and "\n" not in body
    assert certs.same_certificate(body, CREDENTIAL.certificate_pem)
    assert "PRIVATE" not in repr(CREDENTIAL) and "MII" not in repr(CREDENTIAL)


def test_the_eca_zip_holds_an_admin_approved_app_with_the_certificate_and_permission_set() -> None:
    spec = apps.AppSpec(
        full_name="sfc_c1_abcd1234", label="Acme & <ops>", contact_email="a@x.com", callback_url="https://b/cb",
        certificate_body=CREDENTIAL.certificate_body, permission_set_name="sfc_c1_abcd1234", consumer_key="",
        permission_set_id="0PS000000000042AAA",
    )  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(apps.eca_zip(spec, "68.0"))) as zf:
        names = set(zf.namelist())
        files = {n: etree.fromstring(zf.read(n)) for n in names}
    assert names == {
        "package.xml",
        "externalClientApps/sfc_c1_abcd1234.eca",
        "extlClntAppOauthSettings/sfc_c1_abcd1234_oauth.ecaOauth",
        "extlClntAppGlobalOauthSets/sfc_c1_abcd1234_glbloauth.ecaGlblOauth",
        "extlClntAppOauthPolicies/sfc_c1_abcd1234_oauthPlcy.ecaOauthPlcy",
    }
    ns = {"m": "http://soap.sforce.com/2006/04/metadata"}
    members = files["package.xml"].xpath("//m:types/m:members/text()", namespaces=ns)
    assert members == [
        "sfc_c1_abcd1234",
        "sfc_c1_abcd1234_oauth",
        "sfc_c1_abcd1234_glbloauth",
        "sfc_c1_abcd1234_oauthPlcy",
    ]
    policy = files["extlClntAppOauthPolicies/sfc_c1_abcd1234_oauthPlcy.ecaOauthPlcy"]
    assert policy.findtext("m:permittedUsersPolicyType", namespaces=ns) == "AdminApprovedPreAuthorized"
    # salesforce-facts.md §9: the policy lists permission set ids, not names
    assert policy.findtext("m:commaSeparatedPermissionSet", namespaces=ns) == "0PS000000000042AAA"
    glob = files["extlClntAppGlobalOauthSets/sfc_c1_abcd1234_glbloauth.ecaGlblOauth"]
    assert glob.findtext("m:certificate", namespaces=ns) == CREDENTIAL.certificate_body
    assert (
        files["externalClientApps/sfc_c1_abcd1234.eca"].findtext("m:label", namespaces=ns) == "Acme & <ops>"
    )


def test_an_eca_spec_without_the_permission_set_id_is_refused() -> None:
    spec = apps.AppSpec("sfc_x_1", "L", "a@x.com", "https://b/cb", "MIIB", "sfc_x_1", "")
    with pytest.raises(ValueError, match="permission set's id"):
        apps.eca_files(spec, "68.0")


@pytest.mark.parametrize(
    ("listed", "ok"),
    [
        (("0PS000000000042AAA",), True),
        (("0PS000000000042",), True),  # the 15-character form of the same id
        (("sfc_c1_1",), True),  # a ConnectedApp lists the name
        (("0PS000000000043AAA",), False),
        ((), False),
    ],
)
def test_the_read_back_accepts_the_permission_set_by_id_or_name(listed: tuple[str, ...], ok: bool) -> None:
    record = ConnectionRecord(
        connection_id="c1", org_id="00D000000000001AAA", username="u@x.com", admin_email="a@x.com",
        label="L", requested_kind="auto", full_name="sfc_c1_1", permission_set_name="sfc_c1_1",
        certificate_pem=CREDENTIAL.certificate_pem, permission_set_id="0PS000000000042AAA",
    )  # fmt: skip
    found = AppReadback(
        kind="external_client_app", full_name="sfc_c1_1", consumer_key="3MVGkey",
        certificate=CREDENTIAL.certificate_body, admin_approved=True, permission_sets=listed,
    )  # fmt: skip
    if ok:
        assert verify_readback(record, found, "00D000000000001AAA") == "3MVGkey"
    else:
        with pytest.raises(PermanentError, match="permission set sfc_c1_1 is not linked"):
            verify_readback(record, found, "00D000000000001AAA")


def test_a_connected_app_record_is_admin_approved_with_api_and_refresh_scopes() -> None:
    spec = apps.AppSpec("sfc_x_1", "L", "a@x.com", "https://b/cb", "MIIB", "sfc_x_1", "sfcKey12345678")
    record = apps.connected_app_record(spec)
    assert record["oauthConfig"]["isAdminApproved"] is True
    assert record["oauthConfig"]["scopes"] == ["Api", "RefreshToken"]
    assert record["oauthConfig"]["consumerKey"] == "sfcKey12345678"
    assert record["permissionSetName"] == ["sfc_x_1"]


def test_blocked_connected_apps_and_disabled_ecas_are_recognised_by_their_messages() -> None:
    assert apps.connected_app_blocked("FIELD_INTEGRITY_EXCEPTION: Connected App creation is restricted")
    assert not apps.connected_app_blocked("DUPLICATE_VALUE: duplicate value found")
    assert apps.eca_unavailable("External Client Apps are not enabled in this org")
    assert not apps.eca_unavailable("Invalid certificate")


def test_auto_tries_the_preference_first_skips_refused_kinds_and_starts_with_a_known_good_one() -> None:
    assert kinds_to_try("auto", {}, "external_client_app") == ["external_client_app", "connected_app"]
    assert kinds_to_try("auto", {"connected_app": False}, "connected_app") == ["external_client_app"]
    assert kinds_to_try("auto", {"connected_app": True}, "external_client_app") == [
        "connected_app",
        "external_client_app",
    ]
    assert kinds_to_try("connected_app", {"connected_app": False}, "external_client_app") == ["connected_app"]


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, '[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]', InvalidSession),
        (
            403,
            '[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]',
            RequestLimitExceeded,
        ),
        (503, "<html>Service Unavailable</html>", SalesforceUnavailable),
        (400, '[{"message":"bad field","errorCode":"INVALID_FIELD"}]', SalesforceApiError),
    ],
)
def test_rest_error_bodies_become_typed_errors(status: int, body: str, kind: type) -> None:
    assert isinstance(rest_error(status, body, operation="query"), kind)


def test_soap_faults_become_typed_errors_without_session_ids() -> None:
    err = soap_fault(
        "sf:INVALID_SESSION_ID", "INVALID_SESSION_ID: Invalid Session ID found", operation="readMetadata"
    )
    assert isinstance(err, InvalidSession)
    assert isinstance(
        soap_fault("sf:REQUEST_LIMIT_EXCEEDED", "limit", operation="deploy"), RequestLimitExceeded
    )
    perm = soap_fault("sf:INSUFFICIENT_ACCESS", "no", operation="createMetadata")
    assert perm.code == "insufficient_permissions"
