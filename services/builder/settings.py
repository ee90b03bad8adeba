"""The Builder's settings, read once from the environment (names pinned in the team notes)."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import SettingsConfigDict

from shared.contracts import AppKind
from shared.crypto import Keyring
from shared.errors import ConfigurationError
from shared.sealing import Sealer
from shared.settings import ServiceSettings

SANDBOX_LOGIN_URL = "https://test.salesforce.com"
INSTANCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # the Manager's (services/manager/settings.py)
MIN_ADMIN_KEY_LENGTH = 16
YEAR_SECONDS = 365 * 24 * 3600


def _https_or_local(url: str) -> str:
    """An http(s) base URL without a trailing slash; plain http only for loopback hosts."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("must use https (plain http is accepted only for a local simulator)")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    if "@" in parts.netloc:
        raise ValueError("must not carry a user name or password (user:password@)")
    return url.strip().rstrip("/")


def _custom(message: str) -> PydanticCustomError:
    # A custom error keeps pydantic's "Value error, " prefix out of the one-line start-up message.
    return PydanticCustomError("invalid_setting", message)


class BuilderSettings(ServiceSettings):
    """Everything the Builder needs; secrets are SecretStr and never printed."""

    # allow_inf_nan=False (as ServiceSettings): every float setting must be a finite number.
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True, allow_inf_nan=False)

    service_name: str = "builder"
    mongodb_database: str = Field("sfconnect_builder", min_length=1, max_length=63)
    http_host: str = "0.0.0.0"  # noqa: S104 - a service listens on every interface inside its container
    http_port: int = Field(8081, ge=1, le=65535)
    encryption_keys: SecretStr = Field(description="Comma-separated kid:base64key; the first one encrypts.")
    recipient_public_keys: str = Field(description="Comma-separated kid:base64url X25519 public keys.")
    admin_api_key: SecretStr = Field(description="Key for the admin HTTP API (Bearer or X-API-Key).")
    salesforce_client_id: str = Field(min_length=1)
    salesforce_client_secret: SecretStr
    salesforce_login_url: str = "https://login.salesforce.com"
    salesforce_sandbox_login_url: str = SANDBOX_LOGIN_URL
    salesforce_allowed_login_urls: str = Field(
        "", description="Extra login hosts (e.g. My Domains) an admin may pick, comma-separated."
    )
    salesforce_callback_url: str
    salesforce_api_version: str = Field("68.0", pattern=r"^\d{2,3}\.0$")
    jwt_audience: str | None = None
    propagation_deadline_seconds: float = Field(900.0, gt=0, le=YEAR_SECONDS)
    propagation_retry_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="First delay before retrying a token for a new app; doubles, capped at 120s.",
    )
    command_prefetch: int = Field(8, ge=1, le=1000)
    command_max_attempts: int = Field(25, ge=1, le=1000)
    salesforce_timeout_seconds: float = Field(30.0, gt=0, le=600)
    # Plain strings, so that a refusal lists the values as they are written ("auto" is not one of them)
    app_kind_preference: Literal["external_client_app", "connected_app"] = AppKind.EXTERNAL_CLIENT_APP.value
    oauth_state_ttl_seconds: int = Field(600, ge=30, le=3600)
    objects_cache_seconds: int = Field(300, ge=0)
    deploy_poll_seconds: float = Field(1.0, gt=0, le=600)
    shutdown_drain_seconds: float = Field(30.0, ge=0, le=3600)
    mongodb_timeout_seconds: float = Field(
        5.0, gt=0, le=120, description="Server selection, connect and operation timeout for MongoDB calls."
    )
    instance_id: str = Field(
        "", max_length=64, description="Name of this replica for leases (default: hostname-pid)."
    )

    @field_validator("salesforce_login_url", "salesforce_sandbox_login_url", "salesforce_callback_url")
    @classmethod
    def _urls(cls, v: str) -> str:
        return _https_or_local(v)

    @field_validator("jwt_audience")
    @classmethod
    def _aud(cls, v: str | None) -> str | None:
        return _https_or_local(v) if v else None

    @field_validator("salesforce_allowed_login_urls")
    @classmethod
    def _allowed(cls, v: str) -> str:
        return ",".join(_https_or_local(u) for u in v.split(",") if u.strip())

    @field_validator("encryption_keys")
    @classmethod
    def _keyring_parses(cls, v: SecretStr) -> SecretStr:
        # Parse the key material now so a bad key is reported at start-up, by setting name.
        try:
            Keyring.parse(v.get_secret_value())
        except ConfigurationError as exc:
            raise _custom(str(exc).removeprefix("ENCRYPTION_KEYS").strip()) from None
        return v

    @field_validator("recipient_public_keys")
    @classmethod
    def _sealer_parses(cls, v: str) -> str:
        try:
            Sealer.parse(v)
        except ConfigurationError as exc:
            raise _custom(str(exc).removeprefix("RECIPIENT_PUBLIC_KEYS").strip()) from None
        return v

    @field_validator("admin_api_key")
    @classmethod
    def _admin_key(cls, v: SecretStr) -> SecretStr:
        key = v.get_secret_value()
        if not key.strip():
            raise _custom("must not be empty or blank")
        if key != key.strip():
            # A header value loses its surrounding whitespace: such a key could never be presented.
            raise _custom("must not start or end with whitespace (a trailing newline from a file?)")
        if len(key) < MIN_ADMIN_KEY_LENGTH:
            raise _custom(f"must be at least {MIN_ADMIN_KEY_LENGTH} characters")
        return v

    @field_validator("salesforce_client_secret")
    @classmethod
    def _client_secret(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise _custom("must not be empty (the consumer secret of the Builder's app in Salesforce)")
        return v

    @field_validator("instance_id")
    @classmethod
    def _instance_id(cls, v: str) -> str:
        if v and not re.fullmatch(INSTANCE_ID_PATTERN, v):
            raise _custom("must start with a letter or digit and hold only letters, digits, '_', '.' and '-'")
        return v

    def keyring(self) -> Keyring:
        """The at-rest keyring built from ENCRYPTION_KEYS."""
        return Keyring.parse(self.encryption_keys.get_secret_value())

    def sealer(self) -> Sealer:
        """The sealer built from RECIPIENT_PUBLIC_KEYS."""
        return Sealer.parse(self.recipient_public_keys)

    def login_urls(self) -> tuple[str, ...]:
        """Every login host an admin may authorize through, the default first."""
        extra = [u for u in self.salesforce_allowed_login_urls.split(",") if u]
        urls = [self.salesforce_login_url, self.salesforce_sandbox_login_url, *extra]
        return tuple(dict.fromkeys(urls))
