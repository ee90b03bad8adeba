"""The simulator's whole state: orgs with their users, permission sets and apps, plus issued tokens."""

from __future__ import annotations

import copy
import random
import re
import time
from collections.abc import Callable
from typing import Any

from .model import (
    LICENSE_REFUSED,
    Assignment,
    Deploy,
    Knobs,
    OAuthApp,
    OrgConfig,
    PermissionSet,
    SimConfig,
    User,
    UserConfig,
    base62,
    id18,
    same_id,
)
from .tokens import TokenStore

PS_NAME = re.compile(r"^[A-Za-z](?!.*__)[A-Za-z0-9_]{0,79}(?<!_)$")
PRODUCTION_AUDIENCE = "https://login.salesforce.com"
SANDBOX_AUDIENCE = "https://test.salesforce.com"


class RecordError(Exception):
    """A record operation refused, in Salesforce's terms (status code, message, fields)."""

    def __init__(self, status_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.fields = fields or []


class Org:
    """One simulated org (its My Domain is ``{base}/org/{key}``)."""

    def __init__(self, cfg: OrgConfig, org_id: str, now: float) -> None:
        self.key = cfg.key
        self.name = cfg.name or cfg.key.title()
        self.org_id = org_id
        self.sandbox = cfg.sandbox
        self.login_audiences = list(
            cfg.login_audiences or [SANDBOX_AUDIENCE if cfg.sandbox else PRODUCTION_AUDIENCE]
        )
        self.knobs = Knobs.model_validate(cfg.knobs.model_dump())
        self.created_at = now
        self.schema_changed_at = now
        self.users: dict[str, User] = {}
        self.permission_sets: dict[str, PermissionSet] = {}
        self.assignments: dict[str, Assignment] = {}
        self.metadata: dict[str, dict[str, dict[str, Any]]] = {}
        self.record_info: dict[tuple[str, str], dict[str, Any]] = {}  # (type, fullName) -> id, created_at
        self.apps: dict[str, OAuthApp] = {}  # by full name; derived from self.metadata
        self.deploys: dict[str, Deploy] = {}

    def user(self, user_id: str) -> User | None:
        return next((u for u in self.users.values() if same_id(u.id, user_id)), None)

    def user_by_username(self, username: str) -> User | None:
        wanted = username.casefold()
        return next((u for u in self.users.values() if u.username.casefold() == wanted), None)

    def permission_set(self, ps_id: str) -> PermissionSet | None:
        return next((p for p in self.permission_sets.values() if same_id(p.id, ps_id)), None)

    def permission_set_by_name(self, name: str) -> PermissionSet | None:
        wanted = name.casefold()
        return next((p for p in self.permission_sets.values() if p.name.casefold() == wanted), None)

    def permission_set_ref(self, ref: str) -> PermissionSet | None:
        """A permission set by API name or by 0PS id."""
        ref = ref.strip()
        return self.permission_set(ref) if ref.startswith("0PS") else self.permission_set_by_name(ref)

    def user_permission_sets(self, user_id: str) -> list[PermissionSet]:
        held = {
            a.permission_set_id[:15] for a in self.assignments.values() if same_id(a.assignee_id, user_id)
        }
        return [p for p in self.permission_sets.values() if p.id[:15] in held]

    def is_preauthorized(self, user: User, app: OAuthApp) -> bool:
        """True when the user holds a permission set or profile listed on the app."""
        # One pass over the assignments: a JWT grant must not cost O(assignments x permission sets).
        wanted = {
            ps.id[:15] for ref in app.permission_sets if (ps := self.permission_set_ref(ref)) is not None
        }
        if wanted and any(
            a.permission_set_id[:15] in wanted and same_id(a.assignee_id, user.id)
            for a in self.assignments.values()
        ):
            return True
        return any(p.casefold() == user.profile.casefold() for p in app.profiles)

    def snapshot(self) -> Any:
        """A copy of everything a metadata call can change (for all-or-none calls and check-only deploys)."""
        return copy.deepcopy((self.metadata, self.record_info, self.permission_sets, self.apps))

    def restore(self, snapshot: Any) -> None:
        self.metadata, self.record_info, self.permission_sets, self.apps = snapshot

    def admin_user(self) -> User | None:
        active = [u for u in self.users.values() if u.is_active]
        admins = [u for u in active if u.profile == "System Administrator"]
        pool = admins or active
        return pool[0] if pool else None


class SimState:
    """Everything the simulator knows; rebuilt from its configuration on reset."""

    def __init__(self, config: SimConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config or SimConfig()
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget everything that happened: back to the configured state, clock included."""
        cfg = self.config
        self.clock_offset = 0.0
        self._seq = 0
        self.rng = random.Random(cfg.seed)  # noqa: S311 - fault injection, not security
        self.auto_approve = cfg.auto_approve
        self.code_lifetime = cfg.code_lifetime_seconds
        self.base_url = cfg.base_url.rstrip("/") if cfg.base_url else None
        self.tokens = TokenStore()
        self.orgs: dict[str, Org] = {}
        b = cfg.builder_app
        self.builder_app = OAuthApp(
            kind="builder",
            full_name="sfconnect_Builder",
            org_key=None,
            record_id=self.new_id("0H4"),
            consumer_key=b.client_id,
            consumer_secret=b.client_secret,
            label=b.label,
            callback_urls=list(b.callback_urls),
            scopes=list(b.scopes),
            pkce_required=b.pkce_required,
            rotation=b.refresh_token_rotation,
            secret_required=b.secret_required,
            refresh_secret_required=b.secret_required,
        )
        for org_cfg in cfg.orgs:
            self.add_org(org_cfg)

    # --- time and ids --------------------------------------------------------------------
    def now(self) -> float:
        return self._clock() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds

    def new_id(self, prefix: str) -> str:
        self._seq += 1
        return id18(prefix + "Sm" + base62(self._seq, 10))

    # --- orgs, users, permission sets ----------------------------------------------------
    def add_org(self, cfg: OrgConfig) -> Org:
        if cfg.key in self.orgs:
            raise RecordError("DUPLICATE_VALUE", f"an org with key {cfg.key!r} already exists", ["key"])
        org_id = id18(cfg.org_id[:15]) if cfg.org_id else self.new_id("00D")
        org = Org(cfg, org_id, self.now())
        self.orgs[org.key] = org
        for ps in cfg.permission_sets:
            self.create_permission_set(org, ps.name, ps.label or ps.name, ps.description)
        for user_cfg in cfg.users:
            self.add_user(org, user_cfg)
        for record in cfg.connected_apps:
            self.add_connected_app(org, record)
        return org

    def add_connected_app(self, org: Org, data: dict[str, Any]) -> OAuthApp:
        """A pre-existing ConnectedApp (made before Spring '26): the creation block does not apply."""
        from . import apps, mdtypes  # apps builds on this module
        from .soap import SoapFault

        try:
            record = mdtypes.from_json("ConnectedApp", data)
        except SoapFault as fault:
            raise RecordError("INVALID_FIELD", fault.message) from None
        if not isinstance(record.get("oauthConfig"), dict):
            raise RecordError(
                "REQUIRED_FIELD_MISSING", "A connected app needs an oauthConfig", ["oauthConfig"]
            )
        apps.save(self, org, "ConnectedApp", record, "create", preexisting=True)
        return org.apps[record["fullName"]]

    def org(self, key: str) -> Org | None:
        return self.orgs.get(key)

    def add_user(self, org: Org, cfg: UserConfig) -> User:
        if self.find_user(cfg.username) is not None:
            raise RecordError(
                "DUPLICATE_USERNAME", "Duplicate Username. The username already exists.", ["Username"]
            )
        local = cfg.username.split("@")[0]
        user = User(
            id=id18(cfg.id[:15]) if cfg.id else self.new_id("005"),
            username=cfg.username,
            name=cfg.name or local,
            email=cfg.email or cfg.username,
            is_active=cfg.active,
            profile=cfg.profile,
            api_only=cfg.api_only,
            preauthorization=cfg.preauthorization,
        )
        org.users[user.id] = user
        for name in cfg.permission_sets:
            ps = org.permission_set_by_name(name)
            if ps is None:
                raise RecordError("INVALID_CROSS_REFERENCE_KEY", f"no permission set named {name!r}")
            self.assign(org, user.id, ps.id)
        return user

    def find_user(self, username: str) -> tuple[Org, User] | None:
        """Usernames are unique across all orgs, as in Salesforce."""
        for org in self.orgs.values():
            user = org.user_by_username(username)
            if user is not None:
                return org, user
        return None

    def create_permission_set(self, org: Org, name: str, label: str, description: str = "") -> PermissionSet:
        if not name:
            raise RecordError("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", ["Name"])
        if not label:
            raise RecordError("REQUIRED_FIELD_MISSING", "Required fields are missing: [Label]", ["Label"])
        if not PS_NAME.fullmatch(name):
            raise RecordError(
                "FIELD_INTEGRITY_EXCEPTION",
                "The API Name can only contain underscores and alphanumeric characters. It must be unique, "
                "begin with a letter, not include spaces, not end with an underscore, and not contain two "
                "consecutive underscores.",
                ["Name"],
            )
        if org.permission_set_by_name(name) is not None:
            raise RecordError("DUPLICATE_DEVELOPER_NAME", "The name already exists.", ["Name"])
        ps = PermissionSet(self.new_id("0PS"), name, label, description)
        org.permission_sets[ps.id] = ps
        return ps

    def assign(self, org: Org, user_id: str, ps_id: str) -> Assignment:
        user, ps = org.user(user_id), org.permission_set(ps_id)
        if user is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["AssigneeId"])
        if ps is None:
            raise RecordError(
                "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["PermissionSetId"]
            )
        if user.preauthorization == "license_refused":
            raise RecordError("FIELD_INTEGRITY_EXCEPTION", LICENSE_REFUSED, ["AssigneeId"])
        for a in org.assignments.values():
            if a.assignee_id == user.id and a.permission_set_id == ps.id:
                raise RecordError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: <unknown> duplicates value on record with id: {a.id}",
                )
        assignment = Assignment(self.new_id("0Pa"), user.id, ps.id)
        org.assignments[assignment.id] = assignment
        return assignment

    def delete_permission_set(self, org: Org, ps_id: str) -> None:
        ps = org.permission_set(ps_id)
        if ps is None:
            raise RecordError("NOT_FOUND", "The requested resource does not exist")
        if any(a.permission_set_id == ps.id for a in org.assignments.values()):
            raise RecordError(
                "DELETE_FAILED",
                "This permission set is assigned to one or more users. Remove the assignments first.",
            )
        del org.permission_sets[ps.id]

    def delete_assignment(self, org: Org, assignment_id: str) -> None:
        found = next((a for a in org.assignments.values() if same_id(a.id, assignment_id)), None)
        if found is None:
            raise RecordError("NOT_FOUND", "The requested resource does not exist")
        del org.assignments[found.id]

    # --- apps ----------------------------------------------------------------------------
    def all_apps(self) -> list[OAuthApp]:
        return [self.builder_app, *(a for org in self.orgs.values() for a in org.apps.values())]

    def find_app(self, consumer_key: str) -> OAuthApp | None:
        return next((a for a in self.all_apps() if a.consumer_key == consumer_key), None)

    def app_ready(self, app: OAuthApp) -> bool:
        """False while a new app's key is still 'propagating' to the login servers."""
        return app.org_key is None or self.now() >= app.ready_at

    def consumer_key_taken(self, key: str) -> bool:
        return self.find_app(key) is not None
