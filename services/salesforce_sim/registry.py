"""Where an org keeps its metadata components, and the OAuth clients derived from them."""

from __future__ import annotations

import re
from typing import Any

from .mdtypes import Record, csv, flag
from .model import OAuthApp
from .state import Org, SimState

ECA_PARTS = (
    "ExtlClntAppGlobalOauthSettings",
    "ExtlClntAppOauthSettings",
    "ExtlClntAppOauthConfigurablePolicies",
)
ID_PREFIX = {
    "ConnectedApp": "0H4",
    "ExternalClientApplication": "0xI",
    "ExtlClntAppGlobalOauthSettings": "0Hx",
    "ExtlClntAppOauthSettings": "0xO",
    "ExtlClntAppOauthConfigurablePolicies": "0xP",
}


def store(
    state: SimState, org: Org, type_name: str, record: Record, *, ready_at: float | None = None
) -> bool:
    """Keep the record; returns True when it is new.

    ``ready_at`` (default: now) is when an OAuth client made from a new record becomes known to the login
    servers; it is fixed at creation, so later changes of the propagation knob do not move it.
    """
    name = record["fullName"]
    info = org.record_info.get((type_name, name))
    if info is None:
        now = state.now()
        org.record_info[(type_name, name)] = {
            "id": state.new_id(ID_PREFIX[type_name]),
            "created_at": now,
            "ready_at": now if ready_at is None else ready_at,
        }
    org.metadata.setdefault(type_name, {})[name] = record
    return info is None


def _split_urls(value: Any) -> list[str]:
    return [u for u in re.split(r"[\s,]+", str(value or "")) if u]


def rebuild_apps(state: SimState, org: Org) -> None:
    """Derive the org's OAuth clients from its ConnectedApp and External Client App components."""
    apps: dict[str, OAuthApp] = {}
    for name, rec in org.metadata.get("ConnectedApp", {}).items():
        oauth = rec.get("oauthConfig")
        if not oauth:
            continue
        info = org.record_info[("ConnectedApp", name)]
        apps[name] = OAuthApp(
            kind="connected_app",
            full_name=name,
            org_key=org.key,
            record_id=info["id"],
            consumer_key=oauth["consumerKey"],
            consumer_secret=oauth["consumerSecret"],
            consumer_id=info["id"],
            label=rec.get("label", ""),
            callback_urls=_split_urls(oauth.get("callbackUrl")),
            scopes=list(oauth.get("scopes", [])),
            certificate=oauth.get("certificate"),
            admin_approved=flag(oauth, "isAdminApproved"),
            permission_sets=list(rec.get("permissionSetName", [])),
            profiles=list(rec.get("profileName", [])),
            pkce_required=flag(oauth, "isPkceRequired"),
            rotation=flag(oauth, "isRefreshTokenRotationEnabled"),
            secret_required=not flag(oauth, "isConsumerSecretOptional"),
            refresh_secret_required=flag(oauth, "isSecretRequiredForRefreshToken", True),
            client_credentials_enabled=flag(oauth, "isClientCredentialEnabled"),
            client_credentials_user=oauth.get("oauthClientCredentialUser"),
            created_at=info["created_at"],
            ready_at=info["ready_at"],
        )
    parts = {
        t: {r.get("externalClientApplication"): (n, r) for n, r in org.metadata.get(t, {}).items()}
        for t in ECA_PARTS
    }
    for name, eca in org.metadata.get("ExternalClientApplication", {}).items():
        glbl = parts["ExtlClntAppGlobalOauthSettings"].get(name)
        if glbl is None:
            continue
        if name not in parts["ExtlClntAppOauthConfigurablePolicies"]:
            # "The OAuth Policies file is generated when you deploy."
            policy = {
                "fullName": f"{name}_oauthPlcy",
                "externalClientApplication": name,
                "ipRelaxationPolicyType": "Enforce",
                "permittedUsersPolicyType": "AllSelfAuthorized",
                "refreshTokenPolicyType": "Infinite",
            }
            store(state, org, "ExtlClntAppOauthConfigurablePolicies", policy)
            parts["ExtlClntAppOauthConfigurablePolicies"][name] = (policy["fullName"], policy)
        g_name, g = glbl
        policy = parts["ExtlClntAppOauthConfigurablePolicies"][name][1]
        settings = parts["ExtlClntAppOauthSettings"].get(name, ("", {}))[1]
        g_info = org.record_info[("ExtlClntAppGlobalOauthSettings", g_name)]
        apps[name] = OAuthApp(
            kind="external_client_app",
            full_name=name,
            org_key=org.key,
            record_id=org.record_info[("ExternalClientApplication", name)]["id"],
            consumer_key=g["consumerKey"],
            consumer_secret=g["consumerSecret"],
            consumer_id=g_info["id"],
            label=eca.get("label", name),
            callback_urls=_split_urls(g.get("callbackUrl")),
            scopes=csv(settings.get("commaSeparatedOauthScopes")),
            certificate=g.get("certificate"),
            admin_approved=policy.get("permittedUsersPolicyType") == "AdminApprovedPreAuthorized",
            permission_sets=csv(policy.get("commaSeparatedPermissionSet")),
            profiles=csv(policy.get("commaSeparatedProfile")),
            pkce_required=flag(g, "isPkceRequired", True),
            rotation=flag(g, "isRefreshTokenRotationEnabled"),
            secret_required=not flag(g, "isConsumerSecretOptional"),
            refresh_secret_required=flag(g, "isSecretRequiredForRefreshToken", True),
            client_credentials_enabled=flag(g, "isClientCredentialsFlowEnabled")
            and flag(policy, "isClientCredentialsFlowEnabled"),
            client_credentials_user=policy.get("clientCredentialsFlowUser"),
            created_at=g_info["created_at"],
            ready_at=g_info["ready_at"],
        )
    org.apps = apps
