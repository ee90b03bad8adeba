"""OAuth scopes: the Metadata API names an app is configured with, and the values clients request."""

from __future__ import annotations

from .model import OAuthApp

# Metadata API scope names -> the OAuth scope values clients request and token responses list.
SCOPE_VALUES: dict[str, list[str]] = {
    "Basic": ["id"],
    "Api": ["api"],
    "Web": ["web"],
    "Full": ["full"],
    "Chatter": ["chatter_api"],
    "CustomApplications": ["visualforce"],
    "RefreshToken": ["refresh_token", "offline_access"],
    "OfflineAccess": ["refresh_token", "offline_access"],
    "OpenID": ["openid"],
    "Profile": ["profile"],
    "Email": ["email"],
    "Address": ["address"],
    "Phone": ["phone"],
    "CustomPermissions": ["custom_permissions"],
    "Wave": ["wave_api"],
    "Eclair": ["eclair_api"],
    "Pardot": ["pardot_api"],
    "Lightning": ["lightning"],
    "Content": ["content"],
    "CDPIngest": ["cdp_ingest_api"],
    "Chatbot": ["chatbot_api"],
    "ForgotPassword": ["forgot_password"],
    "UserRegistration": ["user_registration_api"],
    "PwdlessLogin": ["pwdless_login_api"],
}
REFRESH_VALUES = {"refresh_token", "offline_access"}


def allowed_scopes(app: OAuthApp) -> list[str]:
    out: list[str] = []
    for name in app.scopes:
        for value in SCOPE_VALUES.get(name, [name.lower()]):
            if value not in out:
                out.append(value)
    return out


def default_scopes(app: OAuthApp) -> list[str]:
    """One value per configured scope (what a response lists when the client asked for nothing)."""
    out: list[str] = []
    for name in app.scopes:
        value = SCOPE_VALUES.get(name, [name.lower()])[0]
        if value not in out:
            out.append(value)
    return out


def requested_scopes(app: OAuthApp, raw: str | None) -> list[str] | None:
    """The scopes granted for a request, or None when it asks for one the app does not have."""
    if not raw or not raw.strip():
        return default_scopes(app)
    allowed = set(allowed_scopes(app))
    wanted: list[str] = []
    for value in raw.split():
        if value not in allowed:
            return None
        if value not in wanted:
            wanted.append(value)
    return wanted
