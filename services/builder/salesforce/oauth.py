"""OAuth 2.0 with Salesforce: web server flow with PKCE, signature check, refresh, revoke."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from builder.salesforce.errors import OAuthError, SalesforceUnavailable, oauth_error
from builder.salesforce.transport import Transport
from shared.errors import PermanentError

AUTHORIZE_PATH = "/services/oauth2/authorize"
TOKEN_PATH = "/services/oauth2/token"
REVOKE_PATH = "/services/oauth2/revoke"
SCOPES = "api refresh_token"


class SignatureMismatch(PermanentError):
    """The token response's signature does not match its identity URL and time stamp."""

    code = "signature_mismatch"


@dataclass(frozen=True)
class TokenResponse:
    """A successful token endpoint answer; secrets are hidden from repr."""

    access_token: str = field(repr=False)
    instance_url: str
    id: str = ""
    issued_at: str = ""
    signature: str = field(default="", repr=False)
    scope: str = ""
    token_type: str = "Bearer"
    refresh_token: str | None = field(default=None, repr=False)

    @property
    def org_id(self) -> str:
        """The org id from the identity URL ``.../id/{org}/{user}``."""
        return _identity_parts(self.id)[0]

    @property
    def user_id(self) -> str:
        return _identity_parts(self.id)[1]

    def issued_at_datetime(self) -> datetime:
        """``issued_at`` (milliseconds since the epoch) as an aware datetime; now when absent."""
        try:
            return datetime.fromtimestamp(int(self.issued_at) / 1000, UTC)
        except (TypeError, ValueError):
            return datetime.now(UTC)


def _identity_parts(identity_url: str) -> tuple[str, str]:
    parts = [p for p in urlsplit(identity_url).path.split("/") if p]
    if len(parts) >= 3 and parts[-3] == "id":
        return parts[-2], parts[-1]
    return "", ""


def parse_token_response(text: str) -> TokenResponse:
    """Parse a token endpoint JSON body; a body without access_token or instance_url is refused."""
    try:
        data = json.loads(text)
    except ValueError:
        raise SalesforceUnavailable(
            "Salesforce token endpoint answered with a body that is not JSON"
        ) from None
    if not isinstance(data, dict) or not data.get("access_token") or not data.get("instance_url"):
        raise OAuthError("invalid_response", "token response lacks access_token or instance_url", status=200)
    return TokenResponse(
        access_token=str(data["access_token"]),
        instance_url=str(data["instance_url"]).rstrip("/"),
        id=str(data.get("id", "")),
        issued_at=str(data.get("issued_at", "")),
        signature=str(data.get("signature", "")),
        scope=str(data.get("scope", "")),
        token_type=str(data.get("token_type", "Bearer")),
        refresh_token=str(data["refresh_token"]) if data.get("refresh_token") else None,
    )


async def post_token(
    transport: Transport, host: str, form: dict[str, str], *, operation: str
) -> TokenResponse:
    """POST a form to ``{host}/services/oauth2/token``; refusals become OAuthError / retryable errors."""
    resp = await transport.request(
        "POST",
        host.rstrip("/") + TOKEN_PATH,
        operation=operation,
        data=form,
        headers={"Accept": "application/json"},
    )
    if not resp.ok:
        raise oauth_error(resp.status, resp.text)
    return parse_token_response(resp.text)


def new_pkce_verifier() -> str:
    """A PKCE code_verifier: 128 characters from the base64url alphabet (96 random bytes)."""
    return secrets.token_urlsafe(96)


def pkce_challenge(verifier: str) -> str:
    """The S256 code_challenge: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def new_state() -> str:
    """A random, unguessable OAuth ``state``."""
    return secrets.token_urlsafe(32)


def authorize_url(*, login_url: str, client_id: str, redirect_uri: str, state: str, verifier: str) -> str:
    """The URL the admin's browser is sent to."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPES,
            "state": state,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{login_url.rstrip('/')}{AUTHORIZE_PATH}?{query}"


def verify_signature(token: TokenResponse, client_secret: str) -> None:
    """Check ``signature == base64(HMAC-SHA256(client_secret, id + issued_at))`` in constant time."""
    if not token.signature or not token.id or not token.issued_at:
        raise SignatureMismatch("the token response carries no signature, identity URL or time stamp")
    expected = hmac.new(
        client_secret.encode(), (token.id + token.issued_at).encode(), hashlib.sha256
    ).digest()
    try:
        given = base64.b64decode(token.signature, validate=True)
    except ValueError:
        raise SignatureMismatch("the token response signature is not base64") from None
    if not hmac.compare_digest(expected, given):
        raise SignatureMismatch("the token response signature does not match its identity URL")


@dataclass
class OAuthClient:
    """The Builder's own OAuth client app: code exchange, refresh, revoke."""

    transport: Transport
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str

    async def exchange_code(self, *, login_url: str, code: str, verifier: str) -> TokenResponse:
        """Trade an authorization code for tokens and verify the response signature."""
        token = await post_token(
            self.transport,
            login_url,
            {
                "grant_type": "authorization_code",
                "code": code,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
            },
            operation="oauth_code_exchange",
        )
        verify_signature(token, self.client_secret)
        return token

    async def refresh(self, *, token_host: str, refresh_token: str) -> TokenResponse:
        """Refresh grant; with rotation the response carries a new refresh token that must be kept."""
        return await post_token(
            self.transport,
            token_host,
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
            operation="oauth_refresh",
        )

    async def revoke(self, *, host: str, token: str) -> bool:
        """Revoke a token; True when revoked now, False when Salesforce no longer knew it."""
        resp = await self.transport.request(
            "POST", host.rstrip("/") + REVOKE_PATH, operation="oauth_revoke", data={"token": token}
        )
        if resp.ok:
            return True
        err = oauth_error(resp.status, resp.text)
        if isinstance(err, OAuthError) and err.error in ("invalid_token", "unsupported_token_type"):
            return False
        raise err
