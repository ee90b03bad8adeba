"""Saving, reading and deleting metadata components, and deriving each org's OAuth apps from them.

Shared by ``createMetadata``/``readMetadata``/``deleteMetadata`` and by ``deploy``.
"""

from __future__ import annotations

import base64
import copy
import re
from typing import Literal

from cryptography import x509

from .mdtypes import Record, csv, flag, missing_required
from .model import random_alnum
from .registry import rebuild_apps, store
from .state import Org, RecordError, SimState

NAME = re.compile(r"^[A-Za-z](?!.*__)[A-Za-z0-9_]{0,79}(?<!_)$")
ALNUM = re.compile(r"^[A-Za-z0-9]{8,256}$")
BLOCKED = (
    "Connected App creation is restricted in this org as of Spring '26: new connected apps can only be "
    "installed from a package or created after Salesforce Support enables it. Create an External Client App."
)
ECA_TYPES = (
    "ExternalClientApplication",
    "ExtlClntAppGlobalOauthSettings",
    "ExtlClntAppOauthSettings",
    "ExtlClntAppOauthConfigurablePolicies",
)
SUPPORTED = ("ConnectedApp", "PermissionSet", *ECA_TYPES)
Mode = Literal["create", "upsert"]


def _require(record: Record, *names: str) -> None:
    for name in names:
        if not str(record.get(name) or "").strip():
            raise RecordError("REQUIRED_FIELD_MISSING", f"Required field is missing: {name}", [name])


def _check_certificate(value: str | None) -> None:
    if not value:
        return
    try:
        text = value.strip()
        if "BEGIN CERTIFICATE" in text:
            x509.load_pem_x509_certificate(text.encode())
        else:
            x509.load_der_x509_certificate(base64.b64decode("".join(text.split()), validate=True))
    except ValueError:
        raise RecordError(
            "FIELD_INTEGRITY_EXCEPTION", "The certificate is not a valid X.509 certificate.", ["certificate"]
        ) from None


def _credentials(state: SimState, holder: Record, old: Record | None) -> None:
    """Validate or generate consumerKey / consumerSecret in ``holder`` (an oauthConfig or global settings)."""
    old_key = (old or {}).get("consumerKey")
    key = holder.get("consumerKey")
    if key:
        if not ALNUM.fullmatch(key):
            raise RecordError(
                "FIELD_INTEGRITY_EXCEPTION",
                "The consumer key must be alphanumeric and contain 8 to 256 characters.",
                ["consumerKey"],
            )
        if old_key and key != old_key:
            raise RecordError(
                "FIELD_INTEGRITY_EXCEPTION", "You cannot provide a Consumer Key", ["consumerKey"]
            )
        if not old_key and state.consumer_key_taken(key):
            raise RecordError("DUPLICATE_VALUE", "The consumer key is already taken.", ["consumerKey"])
    holder["consumerKey"] = key or old_key or "3MVG9" + random_alnum(80)
    secret = holder.get("consumerSecret")
    if secret and not ALNUM.fullmatch(secret):
        raise RecordError(
            "FIELD_INTEGRITY_EXCEPTION",
            "The consumer secret must be alphanumeric and contain 8 to 256 characters.",
            ["consumerSecret"],
        )
    holder["consumerSecret"] = secret or (old or {}).get("consumerSecret") or random_alnum(64)


def _connected_app(state: SimState, org: Org, rec: Record, old: Record | None, preexisting: bool) -> None:
    if old is None and org.knobs.connected_apps_blocked and not preexisting:
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", BLOCKED)
    oauth = rec.get("oauthConfig")
    if oauth is not None:
        _check_certificate(oauth.get("certificate"))
        _credentials(state, oauth, (old or {}).get("oauthConfig"))
        user = oauth.get("oauthClientCredentialUser")
        if user and org.user_by_username(user) is None:
            raise RecordError(
                "INVALID_CROSS_REFERENCE_KEY", f"User '{user}' doesn't exist", ["oauthClientCredentialUser"]
            )
    if (rec.get("permissionSetName") or rec.get("profileName")) and not flag(oauth, "isAdminApproved"):
        raise RecordError(
            "FIELD_INTEGRITY_EXCEPTION",
            "To use permissionSetName or profileName, set isAdminApproved to true in oauthConfig.",
            ["permissionSetName"],
        )
    for ps in rec.get("permissionSetName", []):
        if ps.strip() and org.permission_set_by_name(ps) is None:
            raise RecordError(
                "INVALID_CROSS_REFERENCE_KEY", f"Permission set '{ps}' doesn't exist", ["permissionSetName"]
            )
    if old is None and org.knobs.drop_admin_approval_on_create and not preexisting:
        # Reproduces the pitfall in salesforce-facts.md section 1: the app ends up "All users may self-authorize".
        if oauth is not None:
            oauth.pop("isAdminApproved", None)
        rec.pop("permissionSetName", None)
        rec.pop("profileName", None)


def _eca_ref(org: Org, rec: Record) -> str:
    _require(rec, "externalClientApplication")
    ref = rec["externalClientApplication"]
    if ref not in org.metadata.get("ExternalClientApplication", {}):
        raise RecordError(
            "INVALID_CROSS_REFERENCE_KEY",
            f"In field: externalClientApplication - no ExternalClientApplication named {ref} found",
            ["externalClientApplication"],
        )
    return str(ref)


def _eca_part(state: SimState, org: Org, type_name: str, rec: Record, old: Record | None) -> None:
    if type_name == "ExternalClientApplication":
        return
    ref = _eca_ref(org, rec)
    for other_name, other in org.metadata.get(type_name, {}).items():
        if other_name != rec["fullName"] and other.get("externalClientApplication") == ref:
            raise RecordError(
                "DUPLICATE_VALUE",
                f"External client app {ref} already has a {type_name} component ({other_name}).",
                ["externalClientApplication"],
            )
    if type_name == "ExtlClntAppGlobalOauthSettings":
        _check_certificate(rec.get("certificate"))
        _credentials(state, rec, old)
    if type_name == "ExtlClntAppOauthConfigurablePolicies":
        for ref_ps in csv(rec.get("commaSeparatedPermissionSet")):
            if org.permission_set_ref(ref_ps) is None:
                raise RecordError(
                    "INVALID_CROSS_REFERENCE_KEY",
                    f"Permission set '{ref_ps}' doesn't exist",
                    ["commaSeparatedPermissionSet"],
                )
        user = rec.get("clientCredentialsFlowUser")
        if user and org.user_by_username(user) is None:
            raise RecordError(
                "INVALID_CROSS_REFERENCE_KEY", f"User '{user}' doesn't exist", ["clientCredentialsFlowUser"]
            )


def save(
    state: SimState, org: Org, type_name: str, record: Record, mode: Mode, *, preexisting: bool = False
) -> bool:
    """Validate and keep one component; returns True if it was created (False: updated).

    ``preexisting`` components (from the state file or the admin API) stand for apps made before Spring '26
    or enabled by Support: the "connected app creation blocked" switch does not apply to them.
    """
    rec = copy.deepcopy(record)
    name = str(rec.get("fullName") or "")
    if not name:
        raise RecordError("REQUIRED_FIELD_MISSING", "Required field is missing: fullName", ["fullName"])
    if not NAME.fullmatch(name):
        raise RecordError(
            "FIELD_INTEGRITY_EXCEPTION",
            "The fullName can only contain underscores and alphanumeric characters. It must begin with a letter, "
            "not include spaces, not end with an underscore, and not contain two consecutive underscores.",
            ["fullName"],
        )
    # A record without what the WSDL requires would be stored and later fail readMetadata's schema.
    if (missing := missing_required(rec, type_name)) is not None:
        raise RecordError("REQUIRED_FIELD_MISSING", f"Required field is missing: {missing}", [missing])
    if type_name == "PermissionSet":
        return _permission_set(state, org, rec, mode)
    if type_name in ECA_TYPES and not org.knobs.eca_enabled:
        raise RecordError(
            "INVALID_TYPE",
            "External Client Apps aren't enabled in this org (Opt in to External Client Apps).",
        )
    old = org.metadata.get(type_name, {}).get(name)
    if old is not None and mode == "create":
        info = org.record_info[(type_name, name)]
        raise RecordError(
            "DUPLICATE_VALUE",
            f"duplicate value found: fullName duplicates value on record with id: {info['id']}",
            ["fullName"],
        )
    if type_name == "ConnectedApp":
        _connected_app(state, org, rec, old, preexisting)
    else:
        _eca_part(state, org, type_name, rec, old)
    # Apps made through the Metadata API propagate for a while; pre-existing ones are known at once.
    ready_at = state.now() + (0.0 if preexisting else org.knobs.propagation_delay_seconds)
    created = store(state, org, type_name, rec, ready_at=ready_at)
    if type_name == "ConnectedApp" and not created and not (old or {}).get("oauthConfig"):
        # An existing app that gains its OAuth part now propagates from now.
        org.record_info[(type_name, name)]["ready_at"] = ready_at
    rebuild_apps(state, org)
    return created


def _permission_set(state: SimState, org: Org, rec: Record, mode: Mode) -> bool:
    existing = org.permission_set_by_name(rec["fullName"])
    if existing is not None and mode == "create":
        raise RecordError("DUPLICATE_DEVELOPER_NAME", "The name already exists.", ["fullName"])
    _require(rec, "label")
    extra = {
        k: v for k, v in rec.items() if k not in ("fullName", "label", "description", "hasActivationRequired")
    }
    if existing is not None:
        existing.label, existing.description, existing.extra = rec["label"], rec.get("description", ""), extra
        return False
    ps = state.create_permission_set(org, rec["fullName"], rec["label"], rec.get("description", ""))
    ps.extra = extra
    return True


def read(org: Org, type_name: str, name: str) -> Record | None:
    """The component as readMetadata returns it (consumer secrets never leave)."""
    if type_name == "PermissionSet":
        ps = org.permission_set_by_name(name)
        if ps is None:
            return None
        rec: Record = {"fullName": ps.name, "hasActivationRequired": "false", "label": ps.label, **ps.extra}
        if ps.description:
            rec["description"] = ps.description
        return rec
    found = org.metadata.get(type_name, {}).get(name)
    if found is None:
        return None
    rec = copy.deepcopy(found)
    rec.pop("consumerSecret", None)
    if isinstance(rec.get("oauthConfig"), dict):
        rec["oauthConfig"].pop("consumerSecret", None)
    return rec


def record_id(org: Org, type_name: str, name: str) -> str | None:
    if type_name == "PermissionSet":
        ps = org.permission_set_by_name(name)
        return ps.id if ps else None
    info = org.record_info.get((type_name, name))
    return str(info["id"]) if info else None


def delete(state: SimState, org: Org, type_name: str, name: str) -> None:
    """Delete one component (an ExternalClientApplication takes its settings and policies with it)."""
    missing = RecordError(
        "INVALID_CROSS_REFERENCE_KEY", f"In field: fullName - no {type_name} named {name} found", ["fullName"]
    )
    if type_name == "PermissionSet":
        ps = org.permission_set_by_name(name)
        if ps is None:
            raise missing
        state.delete_permission_set(org, ps.id)
        return
    if name not in org.metadata.get(type_name, {}):
        raise missing
    doomed = [(type_name, name)]
    if type_name == "ExternalClientApplication":
        for part in ECA_TYPES[1:]:
            doomed += [
                (part, n)
                for n, r in org.metadata.get(part, {}).items()
                if r.get("externalClientApplication") == name
            ]
    before = {a.consumer_key for a in org.apps.values()}
    for t, n in doomed:
        org.metadata[t].pop(n, None)
        org.record_info.pop((t, n), None)
    rebuild_apps(state, org)
    for key in before - {a.consumer_key for a in org.apps.values()}:
        state.tokens.revoke_where(app_key=key)
        state.tokens.drop_sessions(app_key=key)
