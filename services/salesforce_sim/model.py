"""The simulated org's records: configuration models (pydantic) and live objects (dataclasses)."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
ORG_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def id18(id15: str) -> str:
    """Salesforce's case-safe 18-character id: the 15-character id plus a 3-character checksum."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for pos, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << pos
        suffix += _SUFFIX_CHARS[bits]
    return id15 + suffix


def same_id(a: str, b: str) -> bool:
    """Compare a 15- or 18-character id with another (15-character ids are case-sensitive prefixes)."""
    if len(a) == 18 and len(b) == 18:
        return a.upper() == b.upper() and a[:15] == b[:15]
    return len(a) in (15, 18) and len(b) in (15, 18) and a[:15] == b[:15]


def base62(n: int, width: int) -> str:
    out = ""
    while n:
        n, rem = divmod(n, 62)
        out = _ALPHABET[rem] + out
    return out.rjust(width, "0")


def random_alnum(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


class Knobs(BaseModel):
    """Per-org behaviour switches; the admin API PATCHes these."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_ms: int = Field(
        default=0, ge=0, le=120_000, description="Added to every call served for this org."
    )
    propagation_delay_seconds: float = Field(
        default=0.0, ge=0, description="A new app's key is unknown at the token endpoint for this long."
    )
    session_timeout_seconds: float = Field(
        default=7200.0, gt=0, description="Inactivity timeout of access tokens."
    )
    error_rate_5xx: float = Field(
        default=0.0, ge=0, le=1, description="Share of calls answered 503 (seeded RNG)."
    )
    fail_next_5xx: int = Field(default=0, ge=0, description="The next N calls for this org are answered 503.")
    api_limit: int | None = Field(
        default=100_000, ge=0, description="API requests allowed (None: unlimited)."
    )
    api_requests_used: int = Field(
        default=0, ge=0, description="Counter of API requests served (PATCH to reset)."
    )
    connected_apps_blocked: bool = Field(
        default=False, description="Spring '26: ConnectedApp creation is refused."
    )
    eca_enabled: bool = Field(default=True, description="External Client Apps are enabled in this org.")
    deploy_seconds: float = Field(default=0.0, ge=0, description="A deploy stays InProgress this long.")
    drop_admin_approval_on_create: bool = Field(
        default=False,
        description="Reproduce the createMetadata pitfall: isAdminApproved is silently dropped.",
    )


Preauthorization = Literal["ok", "license_refused", "token_refused"]
LICENSE_REFUSED = "Can't assign permission set to user: the user license doesn't allow the permission"


class UserConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=80)
    name: str | None = None
    email: str | None = None
    active: bool = True
    profile: str = "Standard User"
    api_only: bool = False
    id: str | None = Field(default=None, pattern=r"^005[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")
    permission_sets: list[str] = Field(default_factory=list, description="Names assigned at load.")
    preauthorization: Preauthorization = Field(
        default="ok",
        description="license_refused: permission set assignments fail; "
        "token_refused: JWT grants answer invalid_app_access even with the permission set.",
    )

    @model_validator(mode="after")
    def _license_allows_load_time_sets(self) -> UserConfig:
        if self.preauthorization == "license_refused" and self.permission_sets:
            raise ValueError("a license_refused user cannot be given permission_sets")
        return self


class PermissionSetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
    label: str | None = None
    description: str = ""


class OrgConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=ORG_KEY.pattern)
    name: str | None = None
    org_id: str | None = Field(default=None, pattern=r"^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")
    sandbox: bool = False
    login_audiences: list[str] | None = Field(
        default=None,
        description="JWT aud values accepted besides the My Domain and the simulator's login host.",
    )
    knobs: Knobs = Field(default_factory=lambda: Knobs())
    users: list[UserConfig] = Field(default_factory=list)
    permission_sets: list[PermissionSetConfig] = Field(default_factory=list)
    connected_apps: list[dict[str, Any]] = Field(
        default_factory=list, description="Pre-existing ConnectedApp components, in Metadata API field names."
    )


class BuilderAppConfig(BaseModel):
    """The Builder's own OAuth client (a connected app installed in every simulated org)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(
        default="3MVG9SimBuilderClientIdForSfconnectLocalRuns", pattern=r"^[A-Za-z0-9._]{8,256}$"
    )
    client_secret: str = Field(default="SimBuilderClientSecret0123456789", min_length=8, max_length=256)
    callback_urls: list[str] = Field(
        default_factory=lambda: [
            "http://127.0.0.1:8081/v1/salesforce/callback",
            "http://localhost:8081/v1/salesforce/callback",
            "http://builder:8081/v1/salesforce/callback",
        ]
    )
    scopes: list[str] = Field(default_factory=lambda: ["Api", "RefreshToken"])
    refresh_token_rotation: bool = True
    pkce_required: bool = True
    secret_required: bool = True
    label: str = "sfconnect Builder"


class SimConfig(BaseModel):
    """The whole simulator state file (JSON or YAML)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    auto_approve: bool = Field(default=False, description="Skip the consent form (scripted runs).")
    code_lifetime_seconds: float = Field(default=900.0, gt=0)
    base_url: str | None = Field(
        default=None, description="Public base URL; default: taken from each request."
    )
    builder_app: BuilderAppConfig = Field(default_factory=BuilderAppConfig)
    orgs: list[OrgConfig] = Field(default_factory=list)


@dataclass
class User:
    id: str
    username: str
    name: str
    email: str
    is_active: bool = True
    profile: str = "Standard User"
    api_only: bool = False
    preauthorization: Preauthorization = "ok"

    def public(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Username": self.username,
            "Name": self.name,
            "Email": self.email,
            "IsActive": self.is_active,
            "Profile": self.profile,
            "ApiOnly": self.api_only,
            "Preauthorization": self.preauthorization,
        }


@dataclass
class PermissionSet:
    id: str
    name: str
    label: str
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # other Metadata API fields, kept for readMetadata

    def public(self) -> dict[str, Any]:
        return {"Id": self.id, "Name": self.name, "Label": self.label, "Description": self.description}


@dataclass
class Assignment:
    id: str
    assignee_id: str
    permission_set_id: str

    def public(self) -> dict[str, Any]:
        return {"Id": self.id, "AssigneeId": self.assignee_id, "PermissionSetId": self.permission_set_id}


AppKind = Literal["builder", "connected_app", "external_client_app"]


@dataclass
class OAuthApp:
    """What the token endpoint needs to know about an OAuth client, derived from its metadata."""

    kind: AppKind
    full_name: str
    org_key: str | None
    record_id: str
    consumer_key: str
    consumer_secret: str
    consumer_id: str = ""  # the OAuth consumer's id in the Connect REST credentials resource
    label: str = ""
    callback_urls: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)  # Metadata API names (Api, RefreshToken, ...)
    certificate: str | None = None  # base64 DER body
    admin_approved: bool = False
    permission_sets: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    pkce_required: bool = False
    rotation: bool = False
    secret_required: bool = True  # web-server flow: not isConsumerSecretOptional
    refresh_secret_required: bool = True  # refresh_token grant: isSecretRequiredForRefreshToken
    client_credentials_enabled: bool = False
    client_credentials_user: str | None = None
    created_at: float = 0.0
    ready_at: float = 0.0  # when the login servers know the key (propagation delay)

    def public(self) -> dict[str, Any]:
        """Everything but the secret."""
        return {
            "kind": self.kind,
            "fullName": self.full_name,
            "id": self.record_id,
            "label": self.label,
            "consumerKey": self.consumer_key,
            "callbackUrls": list(self.callback_urls),
            "scopes": list(self.scopes),
            "hasCertificate": bool(self.certificate),
            "adminApproved": self.admin_approved,
            "permissionSets": list(self.permission_sets),
            "profiles": list(self.profiles),
            "pkceRequired": self.pkce_required,
            "refreshTokenRotation": self.rotation,
            "secretRequired": self.secret_required,
            "refreshSecretRequired": self.refresh_secret_required,
            "clientCredentialsEnabled": self.client_credentials_enabled,
            "createdAt": self.created_at,
            "readyAt": self.ready_at,
        }


@dataclass
class Deploy:
    id: str
    user_id: str
    user_name: str
    check_only: bool
    ignore_warnings: bool
    rollback_on_error: bool
    created_at: float
    done_at: float
    successes: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    pending: list[Any] = field(default_factory=list)  # changes applied when the deploy completes
    applied: bool = False
    completed_at: float | None = None
    error_message: str | None = None
