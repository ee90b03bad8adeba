"""JWT bearer assertions (RS256) and the token request that trades one for an access token."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from builder.salesforce.oauth import TokenResponse, post_token
from builder.salesforce.transport import Transport

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PRODUCTION_AUDIENCE = "https://login.salesforce.com"
SANDBOX_AUDIENCE = "https://test.salesforce.com"
ASSERTION_LIFETIME_SECONDS = 150  # Salesforce allows at most 3 minutes


def audience_for(*, is_sandbox: bool, override: str | None) -> str:
    """The ``aud`` claim: the configured override, else the login or test host by org type."""
    if override:
        return override
    return SANDBOX_AUDIENCE if is_sandbox else PRODUCTION_AUDIENCE


def make_assertion(
    *, consumer_key: str, username: str, audience: str, private_key_pem: str, now: float | None = None
) -> str:
    """Sign ``{iss, sub, aud, exp}`` with the connection's key; ``exp`` is integer seconds, under 3 min ahead."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": consumer_key,
        "sub": username,
        "aud": audience,
        "exp": issued + ASSERTION_LIFETIME_SECONDS,
    }
    # The Builder made this key itself and keeps it under authenticated encryption, so OpenSSL's RSA
    # consistency check (tens of ms of CPU per call; docs/PERFORMANCE.md) proves nothing here: skip it.
    key = serialization.load_pem_private_key(
        private_key_pem.encode(), password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("the connection's private key is not an RSA key")
    return jwt.encode(claims, key, algorithm="RS256")


@dataclass
class JwtBearer:
    """Mint access tokens with the JWT bearer grant at an org's token endpoint."""

    transport: Transport

    async def mint(
        self,
        *,
        token_host: str,
        consumer_key: str,
        username: str,
        audience: str,
        private_key_pem: str,
    ) -> TokenResponse:
        """POST the signed assertion to ``{token_host}/services/oauth2/token``; OAuth refusals raise OAuthError."""
        assertion = make_assertion(
            consumer_key=consumer_key, username=username, audience=audience, private_key_pem=private_key_pem
        )
        return await post_token(
            self.transport,
            token_host,
            {"grant_type": JWT_BEARER, "assertion": assertion},
            operation="jwt_bearer",
        )
