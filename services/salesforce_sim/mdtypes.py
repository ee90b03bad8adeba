"""Metadata API types the simulator stores: field order (from the WSDL), parsing to dicts, writing back.

A record is a dict in field order; values are ``str`` (simple), ``list[str]`` (repeated simple), ``dict``
(complex) or ``list[dict]``. Complex types the simulator does not interpret are kept as generic dicts in
the order they arrived (a schema-valid request keeps them valid on the way back out).
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from .soap import MD, XSI, SoapFault, sub

Record = dict[str, Any]

# name[:kind][*][!]; kind: s (string, default), b (boolean), i (int), x (opaque complex), or a type name here;
# * repeated; ! required by the WSDL (no minOccurs="0").
_SPECS = {
    "ConnectedApp": "attributes:x* canvas:x canvasConfig:x contactEmail! contactPhone description iconUrl infoUrl "
    "ipRanges:x* label! logoUrl mobileAppConfig:x mobileStartUrl oauthConfig:ConnectedAppOauthConfig "
    "oauthPolicy:ConnectedAppOauthPolicy permissionSetName* plugin pluginExecutionUser profileName* "
    "samlConfig:x sessionPolicy:x startUrl",
    "ConnectedAppOauthConfig": "assetTokenConfig:x callbackUrl! certificate consumerKey consumerSecret "
    "idTokenConfig:x isAdminApproved:b isClientCredentialEnabled:b isCodeCredentialEnabled:b "
    "isCodeCredentialPostOnly:b isConsumerSecretOptional:b isIntrospectAllTokens:b isNamedUserJwtEnabled:b "
    "isPkceRequired:b isRefreshTokenRotationEnabled:b isSecretRequiredForRefreshToken:b "
    "isSecretRequiredForTokenExchange:b isTokenExchangeEnabled:b oauthClientCredentialUser scopes* singleLogoutUrl",
    "ConnectedAppOauthPolicy": "ipRelaxation! isTokenExchangeFlowEnabled:b refreshTokenPolicy! singleLogoutUrl",
    "PermissionSet": "applicationVisibilities:x* classAccesses:x* customMetadataTypeAccesses:x* "
    "customPermissions:x* customSettingAccesses:x* description emailRoutingAddressAccesses:x* "
    "externalCredentialPrincipalAccesses:x* externalDataSourceAccesses:x* fieldPermissions:x* flowAccesses:x* "
    "hasActivationRequired:b label! license objectPermissions:x* pageAccesses:x* recordTypeVisibilities:x* "
    "tabSettings:x* userPermissions:x*",
    "ExternalClientApplication": "contactEmail contactPhone description distributionState iconUrl infoUrl "
    "isProtected:b label logoUrl managedType orgScopedExternalApp",
    "ExtlClntAppGlobalOauthSettings": "callbackUrl certificate consumerKey consumerSecret externalClientApplication! "
    "idTokenConfig:x isClientCredentialsFlowEnabled:b isCodeCredFlowEnabled:b isCodeCredPostOnly:b "
    "isConsumerSecretOptional:b isDeviceFlowEnabled:b isIntrospectAllTokens:b isNamedUserJwtEnabled:b "
    "isPkceRequired:b isRefreshTokenRotationEnabled:b isSecretRequiredForRefreshToken:b "
    "isSecretRequiredForTokenExchange:b isTokenExchangeEnabled:b label shouldRotateConsumerKey:b "
    "shouldRotateConsumerSecret:b",
    "ExtlClntAppOauthSettings": "areAttributesIncludedInAssetToken:b areCustomPermsIncludedInAssetToken:b "
    "assetTokenAudiences assetTokenSigningCertificate assetTokenValidity:i clientAssertionCertificate "
    "commaSeparatedCustomScopes commaSeparatedOauthScopes customAttributes:x* externalClientApplication! "
    "isFirstPartyAppEnabled:b label oauthLink singleLogoutUrl trustedIpRanges:x*",
    "ExtlClntAppOauthConfigurablePolicies": "apexHandler clientCredentialsFlowUser commaSeparatedCustomScopes "
    "commaSeparatedPermissionSet commaSeparatedProfile customAttributes:x* executeHandlerAs "
    "externalClientApplication! guestJwtTimeout:i ipRelaxationPolicyType isClientCredentialsFlowEnabled:b "
    "isGuestCodeCredFlowEnabled:b isNamedUserJwtEnabled:b isTokenExchangeFlowEnabled:b label "
    "namedUserJwtTimeout:i permittedUsersPolicyType policyAction refreshTokenPolicyType "
    "refreshTokenValidityPeriod:i refreshTokenValidityUnit requiredSessionLevel sessionTimeoutInMinutes:i "
    "singleLogoutUrl startUrl",
}

ENUMS: dict[tuple[str, str], tuple[str, set[str]]] = {
    ("ConnectedAppOauthConfig", "scopes"): (
        "ConnectedAppOauthAccessScope",
        set(
            "Basic Api Web Full Chatter CustomApplications RefreshToken OpenID Profile Email Address Phone "
            "OfflineAccess CustomPermissions Wave Eclair Pardot Lightning Content CDPIngest CDPProfile CDPQuery "
            "Chatbot CDPSegment CDPIdentityResolution CDPCalculatedInsight ForgotPassword UserRegistration SFAP "
            "Interaction CDP EinsteinGPT PwdlessLogin".split()
        ),
    ),
    ("ExternalClientApplication", "distributionState"): (
        "ExtlClntAppDistState",
        {"Local", "Packaged", "Managed", "AutoInstalled"},
    ),
    ("ExternalClientApplication", "managedType"): ("ExtlClntAppManagedType", {"Local", "Global"}),
    ("ExtlClntAppOauthConfigurablePolicies", "permittedUsersPolicyType"): (
        "PermittedUsersPolicyType",
        {"AllSelfAuthorized", "AdminApprovedPreAuthorized"},
    ),
    ("ExtlClntAppOauthConfigurablePolicies", "refreshTokenPolicyType"): (
        "RefreshTokenPolicyType",
        {"Infinite", "Zero", "SpecificLifetime", "SpecificInactivity"},
    ),
    ("ExtlClntAppOauthConfigurablePolicies", "policyAction"): (
        "PolicyAction",
        {"Block", "RaiseSessionLevel"},
    ),
    ("ExtlClntAppOauthConfigurablePolicies", "requiredSessionLevel"): (
        "SessionSecurityLevel",
        {"LOW", "STANDARD", "HIGH_ASSURANCE"},
    ),
}


def _spec(text: str) -> list[tuple[str, str, bool]]:
    out = []
    for item in text.split():
        item = item.rstrip("!")
        repeated = item.endswith("*")
        name, _, kind = item.rstrip("*").partition(":")
        out.append((name, kind or "s", repeated))
    return out


SPECS = {name: _spec(text) for name, text in _SPECS.items()}
REQUIRED = {
    name: [item.rstrip("!").rstrip("*").partition(":")[0] for item in text.split() if item.endswith("!")]
    for name, text in _SPECS.items()
}


def missing_required(record: Record, type_name: str) -> str | None:
    """The first field the WSDL requires that ``record`` (or a typed sub-record in it) lacks or leaves blank."""
    for name in REQUIRED[type_name]:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()) or value == []:
            return name
    for name, kind, _repeated in SPECS[type_name]:
        if kind not in SPECS or name not in record:
            continue
        value = record[name]
        for item in value if isinstance(value, list) else [value]:
            found = missing_required(item, kind) if isinstance(item, dict) else None
            if found:
                return found
    return None


TOP_LEVEL = {"ConnectedApp", "PermissionSet", *(t for t in SPECS if t.startswith(("External", "Extl")))}


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _children(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def _scalar(el: etree._Element, type_name: str, name: str, kind: str) -> str:
    text = (el.text or "").strip() if kind in ("b", "i") else (el.text or "")
    if kind == "b" and text not in ("true", "false", "1", "0"):
        raise SoapFault("soapenv:Client", f"'{text}' is not valid for the type xsd:boolean")
    if kind == "b":
        text = "true" if text in ("true", "1") else "false"
    if kind == "i" and not text.lstrip("-").isdigit():
        raise SoapFault("soapenv:Client", f"'{text}' is not valid for the type xsd:int")
    enum = ENUMS.get((type_name, name))
    if enum and text not in enum[1]:
        raise SoapFault("soapenv:Client", f"'{text}' is not a valid value for the enum '{enum[0]}'")
    return text


def _generic(el: etree._Element) -> Any:
    kids = _children(el)
    if not kids:
        return el.text or ""
    grouped: dict[str, list[Any]] = {}
    for kid in kids:
        grouped.setdefault(_local(kid), []).append(_generic(kid))
    return {k: v[0] if len(v) == 1 else v for k, v in grouped.items()}


def parse(el: etree._Element, type_name: str, *, top: bool = True) -> Record:
    """An element of ``type_name`` as a record; unknown or misplaced fields are SOAP client faults."""
    spec = {name: (kind, rep) for name, kind, rep in SPECS[type_name]}
    record: Record = {}
    for child in _children(el):
        ns = etree.QName(child).namespace
        name = _local(child)
        if ns not in (MD, None):
            raise SoapFault(
                "soapenv:Client", f"Element {{{ns}}}{name} invalid at this location in type {type_name}"
            )
        if child.get(f"{{{XSI}}}nil") in ("true", "1"):
            continue
        if top and name == "fullName":
            record["fullName"] = (child.text or "").strip()
            continue
        if name not in spec:
            raise SoapFault(
                "soapenv:Client", f"Element {{{MD}}}{name} invalid at this location in type {type_name}"
            )
        kind, repeated = spec[name]
        if kind in SPECS:
            value: Any = parse(child, kind, top=False)
        elif kind == "x":
            value = _generic(child)
        else:
            value = _scalar(child, type_name, name, kind)
        if repeated:
            record.setdefault(name, []).append(value)
        else:
            record[name] = value
    return record


def _write_generic(parent: etree._Element, name: str, value: Any) -> None:
    for item in value if isinstance(value, list) else [value]:
        el = sub(parent, name)
        if isinstance(item, dict):
            for key, inner in item.items():
                _write_generic(el, key, inner)
        else:
            el.text = str(item)


def write(parent: etree._Element, record: Record, type_name: str, *, omit: set[str] | None = None) -> None:
    """Append the record's fields to ``parent`` in the WSDL's order (fullName first)."""
    omit = omit or set()
    if "fullName" in record:
        sub(parent, "fullName", record["fullName"])
    for name, kind, _repeated in SPECS[type_name]:
        if name not in record or name in omit:
            continue
        value = record[name]
        for item in value if isinstance(value, list) else [value]:
            if kind in SPECS:
                write(sub(parent, name), item, kind)
            elif kind == "x":
                _write_generic(parent, name, item)
            else:
                sub(parent, name, str(item))


def flag(record: Record | None, name: str, default: bool = False) -> bool:
    if not record or name not in record:
        return default
    return bool(record[name] == "true")


def csv(value: Any) -> list[str]:
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


def from_json(type_name: str, data: dict[str, Any]) -> Record:
    """A record from JSON/YAML (booleans and numbers allowed), checked exactly like a SOAP request."""
    el = etree.Element(f"{{{MD}}}{type_name}")

    def put(parent: etree._Element, name: str, value: Any) -> None:
        for item in value if isinstance(value, list) else [value]:
            child = sub(parent, name)
            if isinstance(item, dict):
                for key, inner in item.items():
                    put(child, key, inner)
            elif isinstance(item, bool):
                child.text = "true" if item else "false"
            else:
                child.text = str(item)

    for key, value in data.items():
        put(el, key, value)
    return parse(el, type_name)
