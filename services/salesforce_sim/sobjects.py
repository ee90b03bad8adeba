"""The sObjects the simulator knows: describeGlobal entries and rows for the SOQL subset."""

from __future__ import annotations

from typing import Any

from .state import Org

# name, label, plural, key prefix, createable, deletable, updateable, queryable fields
OBJECTS: list[tuple[str, str, str, str, bool, bool, bool, list[str]]] = [
    ("Account", "Account", "Accounts", "001", True, True, True, ["Id", "Name"]),
    ("Contact", "Contact", "Contacts", "003", True, True, True, ["Id", "Name", "Email"]),
    ("ConnectedApplication", "Connected App", "Connected Apps", "0H4", False, False, False, ["Id", "Name"]),
    (
        "ExternalClientApplication",
        "External Client App",
        "External Client Apps",
        "0xI",
        False,
        False,
        False,
        ["Id", "DeveloperName", "MasterLabel"],
    ),
    (
        "Organization",
        "Organization",
        "Organizations",
        "00D",
        False,
        False,
        True,
        ["Id", "Name", "IsSandbox", "OrganizationType", "InstanceName"],
    ),
    (
        "PermissionSet",
        "Permission Set",
        "Permission Sets",
        "0PS",
        True,
        True,
        True,
        ["Id", "Name", "Label", "Description", "IsOwnedByProfile", "NamespacePrefix"],
    ),
    (
        "PermissionSetAssignment",
        "Permission Set Assignment",
        "Permission Set Assignments",
        "0Pa",
        True,
        True,
        False,
        ["Id", "AssigneeId", "PermissionSetId"],
    ),
    (
        "User",
        "User",
        "Users",
        "005",
        True,
        False,
        True,
        ["Id", "Username", "Name", "Email", "IsActive", "UserType"],
    ),
]
SCHEMA = {o[0]: o[7] for o in OBJECTS}


def describe_entry(obj: tuple[str, str, str, str, bool, bool, bool, list[str]], v: str) -> dict[str, Any]:
    """One describeGlobal sobject (the fields of DescribeGlobalSObjectResult)."""
    name, label, plural, prefix, create, delete, update, _fields = obj
    base = f"/services/data/v{v}/sobjects/{name}"
    return {
        "activateable": False,
        "custom": False,
        "customSetting": False,
        "createable": create,
        "deletable": delete,
        "deprecatedAndHidden": False,
        "feedEnabled": name in ("Account", "Contact", "User"),
        "keyPrefix": prefix,
        "label": label,
        "labelPlural": plural,
        "layoutable": name in ("Account", "Contact", "User"),
        "mergeable": name in ("Account", "Contact"),
        "mruEnabled": name in ("Account", "Contact", "User"),
        "name": name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": name in ("Account", "Contact", "User"),
        "triggerable": name in ("Account", "Contact", "User"),
        "undeletable": name in ("Account", "Contact"),
        "updateable": update,
        "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
    }


def rows(org: Org, sobject: str) -> list[dict[str, Any]]:
    if sobject == "User":
        return [
            {
                "Id": u.id,
                "Username": u.username,
                "Name": u.name,
                "Email": u.email,
                "IsActive": u.is_active,
                "UserType": "Standard",
            }
            for u in org.users.values()
        ]
    if sobject == "PermissionSet":
        return [
            {**p.public(), "IsOwnedByProfile": False, "NamespacePrefix": None}
            for p in org.permission_sets.values()
        ]
    if sobject == "PermissionSetAssignment":
        return [a.public() for a in org.assignments.values()]
    if sobject == "Organization":
        kind = "Developer Edition" if not org.sandbox else "Enterprise Edition"
        return [
            {
                "Id": org.org_id,
                "Name": org.name,
                "IsSandbox": org.sandbox,
                "OrganizationType": kind,
                "InstanceName": "SIM1",
            }
        ]
    if sobject == "ConnectedApplication":
        return [
            {"Id": a.record_id, "Name": a.label or a.full_name}
            for a in org.apps.values()
            if a.kind == "connected_app"
        ]
    if sobject == "ExternalClientApplication":
        return [
            {"Id": a.record_id, "DeveloperName": a.full_name, "MasterLabel": a.label}
            for a in org.apps.values()
            if a.kind == "external_client_app"
        ]
    return []
