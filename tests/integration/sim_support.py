"""Helpers for the simulator's tests: PKCE, the authorize round trip, certificates and JWT assertions."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import secrets
import time
import zipfile
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

BUILDER_ID = "3MVG9SimBuilderClientIdForSfconnectLocalRuns"
BUILDER_SECRET = "SimBuilderClientSecret0123456789"
CALLBACK = "http://127.0.0.1:8081/v1/salesforce/callback"
TIMEOUT = aiohttp.ClientTimeout(total=15)


def pkce_pair() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(64)).decode().rstrip("=")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def authorize(
    http: aiohttp.ClientSession,
    host: str,
    *,
    login_hint: str | None = None,
    challenge: str | None = None,
    scope: str | None = "api refresh_token",
    client_id: str = BUILDER_ID,
    redirect_uri: str = CALLBACK,
    state: str = "xyz",
) -> dict[str, str]:
    """GET authorize (auto-approve must be on); returns the query of the redirect to the callback."""
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": state}
    if login_hint:
        params["login_hint"] = login_hint
    if challenge:
        params["code_challenge"] = challenge
        params["code_challenge_method"] = "S256"
    if scope:
        params["scope"] = scope
    async with http.get(f"{host}/services/oauth2/authorize", params=params, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        location = resp.headers["Location"]
    assert location.startswith(redirect_uri)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def post_token(
    http: aiohttp.ClientSession, host: str, form: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{host}/services/oauth2/token", data=form) as resp:
        return resp.status, await resp.json()


async def web_server_login(
    http: aiohttp.ClientSession, host: str, username: str, *, token_host: str | None = None
) -> dict[str, Any]:
    verifier, challenge = pkce_pair()
    query = await authorize(http, host, login_hint=username, challenge=challenge)
    status, body = await post_token(
        http,
        token_host or host,
        {
            "grant_type": "authorization_code",
            "code": query["code"],
            "client_id": BUILDER_ID,
            "client_secret": BUILDER_SECRET,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
    )
    assert status == 200, body
    return body


def make_cert(common_name: str = "sfconnect-test") -> tuple[rsa.RSAPrivateKey, str]:
    """An RSA key and its self-signed certificate as a base64 DER body (no BEGIN/END lines)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def mint_jwt(
    key: rsa.RSAPrivateKey,
    *,
    iss: str,
    sub: str,
    aud: str,
    exp: float | None = None,
    now: float | None = None,
) -> str:
    now = time.time() if now is None else now
    claims = {"iss": iss, "sub": sub, "aud": aud, "exp": int(exp if exp is not None else now + 150)}
    return jwt.encode(claims, key, algorithm="RS256")


def jwt_form(assertion: str) -> dict[str, str]:
    return {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}


MDNS = "http://soap.sforce.com/2006/04/metadata"
PACKAGE = """<?xml version="1.0" encoding="UTF-8"?><Package xmlns="http://soap.sforce.com/2006/04/metadata">{types}<version>68.0</version></Package>"""


def eca_zip(name: str, cert: str, *, permission_set: str = "Sales_Ops", with_policy: bool = True) -> bytes:
    """A metadata-format deploy zip with the four External Client App files."""
    files = {
        f"externalClientApps/{name}.eca": (
            "ExternalClientApplication",
            name,
            f"<contactEmail>admin@acme.example</contactEmail><distributionState>Local</distributionState><isProtected>false</isProtected><label>{name}</label>",
        ),
        f"extlClntAppGlobalOauthSets/{name}_glbloauth.ecaGlblOauth": (
            "ExtlClntAppGlobalOauthSettings",
            f"{name}_glbloauth",
            f"<callbackUrl>https://builder.example/cb</callbackUrl><certificate>{cert}</certificate><externalClientApplication>{name}</externalClientApplication><isPkceRequired>false</isPkceRequired><label>{name} global</label>",
        ),
        f"extlClntAppOauthSettings/{name}_oauth.ecaOauth": (
            "ExtlClntAppOauthSettings",
            f"{name}_oauth",
            f"<commaSeparatedOauthScopes>Api, RefreshToken</commaSeparatedOauthScopes><externalClientApplication>{name}</externalClientApplication><label>{name} oauth</label>",
        ),
    }
    if with_policy:
        files[f"extlClntAppOauthPolicies/{name}_oauthPlcy.ecaOauthPlcy"] = (
            "ExtlClntAppOauthConfigurablePolicies",
            f"{name}_oauthPlcy",
            f"<commaSeparatedPermissionSet>{permission_set}</commaSeparatedPermissionSet><externalClientApplication>{name}</externalClientApplication><label>{name} policy</label><permittedUsersPolicyType>AdminApprovedPreAuthorized</permittedUsersPolicyType>",
        )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        types = "".join(
            f"<types><members>{m}</members><name>{t}</name></types>" for t, m, _ in files.values()
        )
        archive.writestr("package.xml", PACKAGE.format(types=types))
        for path, (type_name, _member, body) in files.items():
            archive.writestr(
                path,
                f'<?xml version="1.0" encoding="UTF-8"?><{type_name} xmlns="{MDNS}">{body}</{type_name}>',
            )
    return buf.getvalue()
