"""What an app looks like in metadata: ConnectedApp records, the External Client App deploy zip, names."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass

from lxml import etree

from builder.salesforce.metadata import MET, Record

ECA_TYPE = "ExternalClientApplication"
ECA_OAUTH_TYPE = "ExtlClntAppOauthSettings"
ECA_GLOBAL_TYPE = "ExtlClntAppGlobalOauthSettings"
ECA_POLICY_TYPE = "ExtlClntAppOauthConfigurablePolicies"
CONNECTED_APP_TYPE = "ConnectedApp"
ADMIN_APPROVED = "AdminApprovedPreAuthorized"

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")
# Everything XML 1.0 cannot carry (C0 controls but tab/newline/return, surrogates, U+FFFE/U+FFFF: lxml
# refuses to serialise them) plus DEL and the C1 controls, which Salesforce labels have no use for.
_CONTROL = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
NAME_BODY_MAX = 24


def api_name(connection_id: str) -> str:
    """A valid, deterministic API name for a connection's app and permission set (``sfc_<id>_<hash>``).

    Letters, digits and single underscores only, starting with a letter, at most 37 characters; the hash of
    the whole id keeps ids that differ only in punctuation or beyond the kept prefix apart.
    """
    body = _NOT_ALNUM.sub("_", connection_id).strip("_")[:NAME_BODY_MAX].rstrip("_")
    digest = hashlib.sha256(connection_id.encode()).hexdigest()[:8]
    return f"sfc_{body}_{digest}" if body else f"sfc_{digest}"


def clean_label(label: str, fallback: str, limit: int = 80) -> str:
    """A label Salesforce and XML both accept: no control or non-XML characters, trimmed, never empty."""
    text = " ".join(_CONTROL.sub(" ", label).split())[:limit].strip()
    return text or fallback


def eca_names(full_name: str) -> dict[str, str]:
    """fullNames of the four ECA components, by metadata type."""
    return {
        ECA_TYPE: full_name,
        ECA_OAUTH_TYPE: f"{full_name}_oauth",
        ECA_GLOBAL_TYPE: f"{full_name}_glbloauth",
        ECA_POLICY_TYPE: f"{full_name}_oauthPlcy",
    }


@dataclass(frozen=True)
class AppSpec:
    """Everything needed to create one connection's app."""

    full_name: str
    label: str
    contact_email: str
    callback_url: str
    certificate_body: str
    permission_set_name: str
    consumer_key: str
    # The 0PS id: an ECA policy's commaSeparatedPermissionSet holds ids (salesforce-facts.md §9).
    permission_set_id: str = ""


def connected_app_record(spec: AppSpec) -> Record:
    """The ConnectedApp metadata: admin-approved, the certificate for JWT, scopes Api + RefreshToken."""
    return {
        "fullName": spec.full_name,
        "label": spec.label,
        "contactEmail": spec.contact_email,
        "description": "Created by sfconnect for one integration connection.",
        "oauthConfig": {
            "callbackUrl": spec.callback_url,
            "certificate": spec.certificate_body,
            "consumerKey": spec.consumer_key,
            "isAdminApproved": True,
            "scopes": ["Api", "RefreshToken"],
        },
        "oauthPolicy": {"ipRelaxation": "ENFORCE", "refreshTokenPolicy": "infinite"},
        "permissionSetName": [spec.permission_set_name],
    }


def _xml(root_type: str, fields: list[tuple[str, str]]) -> bytes:
    root = etree.Element(f"{{{MET}}}{root_type}", nsmap={None: MET})
    for name, value in fields:
        etree.SubElement(root, f"{{{MET}}}{name}").text = value
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def eca_files(spec: AppSpec, api_version: str) -> dict[str, bytes]:
    """The deploy-zip files (package.xml + four components) for an admin-approved ECA with a certificate."""
    if not spec.permission_set_id:
        raise ValueError(
            f"External Client App {spec.full_name} needs its permission set's id (pre-authorize first)"
        )
    names = eca_names(spec.full_name)
    package = etree.Element(f"{{{MET}}}Package", nsmap={None: MET})
    for type_name, member in names.items():
        types = etree.SubElement(package, f"{{{MET}}}types")
        etree.SubElement(types, f"{{{MET}}}members").text = member
        etree.SubElement(types, f"{{{MET}}}name").text = type_name
    etree.SubElement(package, f"{{{MET}}}version").text = api_version
    return {
        "package.xml": bytes(
            etree.tostring(package, xml_declaration=True, encoding="UTF-8", pretty_print=True)
        ),
        f"externalClientApps/{names[ECA_TYPE]}.eca": _xml(
            ECA_TYPE,
            [
                ("contactEmail", spec.contact_email),
                ("description", "Created by sfconnect for one integration connection."),
                ("distributionState", "Local"),
                ("isProtected", "false"),
                ("label", spec.label),
            ],
        ),
        f"extlClntAppOauthSettings/{names[ECA_OAUTH_TYPE]}.ecaOauth": _xml(
            ECA_OAUTH_TYPE,
            [
                ("commaSeparatedOauthScopes", "Api, RefreshToken"),
                ("externalClientApplication", spec.full_name),
                ("label", f"{spec.full_name} OAuth settings"),
            ],
        ),
        f"extlClntAppGlobalOauthSets/{names[ECA_GLOBAL_TYPE]}.ecaGlblOauth": _xml(
            ECA_GLOBAL_TYPE,
            [
                ("callbackUrl", spec.callback_url),
                ("certificate", spec.certificate_body),
                ("externalClientApplication", spec.full_name),
                ("isConsumerSecretOptional", "true"),
                ("isPkceRequired", "false"),
                ("label", f"{spec.full_name} global OAuth settings"),
            ],
        ),
        f"extlClntAppOauthPolicies/{names[ECA_POLICY_TYPE]}.ecaOauthPlcy": _xml(
            ECA_POLICY_TYPE,
            [
                ("commaSeparatedPermissionSet", spec.permission_set_id),
                ("externalClientApplication", spec.full_name),
                ("ipRelaxationPolicyType", "Enforce"),
                ("label", f"{spec.full_name} OAuth policies"),
                ("permittedUsersPolicyType", ADMIN_APPROVED),
                ("refreshTokenPolicyType", "Infinite"),
            ],
        ),
    }


def eca_zip(spec: AppSpec, api_version: str) -> bytes:
    """The ECA files zipped for ``deploy`` (singlePackage: package.xml at the root)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, content in eca_files(spec, api_version).items():
            zf.writestr(path, content)
    return buf.getvalue()


def connected_app_blocked(message: str) -> bool:
    """True when a createMetadata refusal says the org does not allow new connected apps (Spring '26)."""
    text = message.lower()
    return "connected app creation" in text or "connected apps creation" in text


def eca_unavailable(message: str) -> bool:
    """True when a deploy refusal says External Client Apps are not enabled in the org."""
    text = message.lower()
    return ("external client app" in text or "externalclientapp" in text) and any(
        word in text
        for word in ("not enabled", "opt in", "opt-in", "not available", "disabled", "not allowed")
    )
