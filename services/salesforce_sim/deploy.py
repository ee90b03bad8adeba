"""Metadata ``deploy`` (a base64 zip: package.xml + component files) and ``checkDeployStatus``.

A deploy is all-or-none: any component failure rolls every change back (as rollbackOnError=true does,
which production orgs require). With the ``deploy_seconds`` knob the deploy stays InProgress that long.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import io
import zipfile
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from lxml import etree

from . import apps, mdtypes
from .common import Auth, state_of
from .model import Deploy, same_id
from .soap import MD, PARSER, Envelope, SoapFault, response_element, sub
from .state import Org, RecordError, SimState

FOLDERS = {
    "permissionsets": ("PermissionSet", ".permissionset"),
    "connectedApps": ("ConnectedApp", ".connectedApp"),
    "externalClientApps": ("ExternalClientApplication", ".eca"),
    "extlClntAppGlobalOauthSets": ("ExtlClntAppGlobalOauthSettings", ".ecaGlblOauth"),
    "extlClntAppOauthSettings": ("ExtlClntAppOauthSettings", ".ecaOauth"),
    "extlClntAppOauthPolicies": ("ExtlClntAppOauthConfigurablePolicies", ".ecaOauthPlcy"),
}
ORDER = [t for t, _ in FOLDERS.values()]
MAX_UNZIPPED = 16 * 1024 * 1024
MAX_FILES = 1000


class DeployError(Exception):
    """The zip as a whole cannot be deployed."""


@dataclass
class Component:
    type_name: str
    full_name: str
    file_name: str
    record: dict[str, Any] | None = None
    problem: str | None = None


def _manifest(data: bytes) -> dict[str, set[str]]:
    try:
        root = etree.fromstring(data, PARSER)
    except etree.XMLSyntaxError as exc:
        raise DeployError(f"package.xml is not well-formed XML: {exc.msg}") from None
    out: dict[str, set[str]] = {}
    for types in root.findall(f"{{{MD}}}types"):
        name = (types.findtext(f"{{{MD}}}name") or "").strip()
        out.setdefault(name, set()).update((m.text or "").strip() for m in types.findall(f"{{{MD}}}members"))
    return out


def _component(archive: zipfile.ZipFile, path: str, rel: str) -> Component:
    folder, _, file = rel.partition("/")
    if folder not in FOLDERS or "/" in file:
        return Component("", rel, path, problem=f"The simulator does not deploy files under '{folder}/'")
    type_name, suffix = FOLDERS[folder]
    if file.endswith("-meta.xml"):
        return Component(
            type_name, file, path, problem="Source-format file: deploy metadata-format files (no -meta.xml)"
        )
    if not file.endswith(suffix):
        return Component(type_name, file, path, problem=f"A {type_name} file must end with {suffix}")
    full_name = file[: -len(suffix)]
    try:
        root = etree.fromstring(archive.read(path), PARSER)
        if root.tag != f"{{{MD}}}{type_name}":
            raise SoapFault("soapenv:Client", f"Expected a root element {{{MD}}}{type_name}")
        record = mdtypes.parse(root, type_name)
    except etree.XMLSyntaxError as exc:
        return Component(type_name, full_name, path, problem=f"Error parsing file: {exc.msg}")
    except SoapFault as fault:
        return Component(type_name, full_name, path, problem=fault.message)
    record["fullName"] = full_name
    return Component(type_name, full_name, path, record)


def read_zip(encoded: str) -> list[Component]:
    """The components of a deploy zip, in deploy order; structural problems become component failures."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode("".join(encoded.split()), validate=True)))
    except (binascii.Error, zipfile.BadZipFile, ValueError):
        raise DeployError("The ZipFile is not a base64-encoded zip archive") from None
    infos = archive.infolist()
    if len(infos) > MAX_FILES or sum(i.file_size for i in infos) > MAX_UNZIPPED:
        raise DeployError("The zip file is too large for the simulator")
    names = [i.filename for i in infos if not i.is_dir()]
    packages = sorted(
        (n for n in names if n.rsplit("/", 1)[-1] == "package.xml" and n.count("/") <= 1), key=len
    )
    if not packages:
        raise DeployError("No package.xml found")
    root = packages[0][: -len("package.xml")]
    manifest = _manifest(archive.read(packages[0]))
    comps: list[Component] = []
    for name in names:
        if name == packages[0] or not name.startswith(root):
            continue
        comp = _component(archive, name, name[len(root) :])
        listed = manifest.get(comp.type_name, set())
        if comp.problem is None and comp.full_name not in listed and "*" not in listed:
            comp.problem = f"An object '{comp.full_name}' of type {comp.type_name} is in the zip file but not in package.xml"
        comps.append(comp)
    found = {(c.type_name, c.full_name) for c in comps}
    for type_name, members in manifest.items():
        for member in members - {"*"}:
            if (type_name, member) not in found:
                problem = (
                    f"An object '{member}' of type {type_name} was named in package.xml, but was not found in zipped directory"
                    if type_name in ORDER
                    else f"The simulator does not deploy metadata type {type_name}"
                )
                comps.append(Component(type_name, member, "package.xml", problem=problem))
    return sorted(comps, key=lambda c: ORDER.index(c.type_name) if c.type_name in ORDER else len(ORDER))


def _ts(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def finish(state: SimState, org: Org, d: Deploy) -> None:
    """Run the deploy's components (once); roll everything back on any failure or when check-only."""
    if d.applied:
        return
    d.applied, d.completed_at = True, state.now()
    if d.error_message:
        return
    snapshot = org.snapshot()
    when = _ts(d.completed_at)
    for comp in d.pending:
        base = {
            "componentType": comp.type_name,
            "createdDate": when,
            "fileName": comp.file_name,
            "fullName": comp.full_name,
        }
        if comp.problem is not None or comp.record is None:
            d.failures.append({**base, "problem": comp.problem or "Unknown problem"})
            continue
        try:
            created = apps.save(state, org, comp.type_name, comp.record, "upsert")
        except RecordError as exc:
            d.failures.append({**base, "problem": exc.message})
            continue
        d.successes.append(
            {**base, "created": created, "id": apps.record_id(org, comp.type_name, comp.full_name)}
        )
    if d.failures or d.check_only:
        org.restore(snapshot)
    d.pending = []


def _finish_later(state: SimState, org: Org, d: Deploy) -> None:
    if state.now() >= d.done_at:
        finish(state, org, d)


def deploy(request: web.Request, auth: Auth, env: Envelope) -> etree._Element:
    state, org = state_of(request), auth.org
    options = env.operation.find(f"{{{MD}}}DeployOptions")

    def option(name: str) -> bool:
        # Lenient like Salesforce: some clients send Python's "True"/"False".
        return (options.findtext(f"{{{MD}}}{name}", "") if options is not None else "").strip().lower() in (
            "true",
            "1",
        )

    now = state.now()
    d = Deploy(
        id=state.new_id("0Af"),
        user_id=auth.user.id,
        user_name=auth.user.name,
        check_only=option("checkOnly"),
        ignore_warnings=option("ignoreWarnings"),
        rollback_on_error=option("rollbackOnError"),
        created_at=now,
        done_at=now + org.knobs.deploy_seconds,
    )
    try:
        d.pending = read_zip(env.operation.findtext(f"{{{MD}}}ZipFile") or "")
    except DeployError as exc:
        d.error_message = str(exc)
    org.deploys[d.id] = d
    if org.knobs.deploy_seconds <= 0:
        finish(state, org, d)
    else:
        asyncio.get_running_loop().call_later(org.knobs.deploy_seconds, _finish_later, state, org, d)
    resp = response_element("deploy")
    result = sub(resp, "result")
    sub(result, "done", "false")
    sub(result, "id", d.id)
    sub(result, "state", "Queued")
    return resp


def _message(parent: etree._Element, m: dict[str, Any], ok: bool) -> None:
    sub(parent, "changed", "true" if ok else "false")
    sub(parent, "componentType", m["componentType"])
    sub(parent, "created", "true" if ok and m.get("created") else "false")
    sub(parent, "createdDate", m["createdDate"])
    sub(parent, "deleted", "false")
    sub(parent, "fileName", m["fileName"])
    sub(parent, "fullName", m["fullName"])
    if m.get("id"):
        sub(parent, "id", m["id"])
    if not ok:
        sub(parent, "problem", m["problem"])
        sub(parent, "problemType", "Error")
    sub(parent, "success", "true" if ok else "false")


def check_deploy_status(request: web.Request, auth: Auth, env: Envelope) -> etree._Element:
    state, org = state_of(request), auth.org
    wanted = (env.operation.findtext(f"{{{MD}}}asyncProcessId") or "").strip()
    include = (env.operation.findtext(f"{{{MD}}}includeDetails") or "").strip().lower() in ("true", "1")
    d = next((x for x in org.deploys.values() if same_id(x.id, wanted)), None)
    if d is None:
        raise SoapFault("sf:INVALID_ID_FIELD", f"Invalid id specified: {wanted}")
    _finish_later(state, org, d)
    done = d.applied
    failed = bool(d.failures or d.error_message)
    resp = response_element("checkDeployStatus")
    r = sub(resp, "result")
    sub(r, "checkOnly", "true" if d.check_only else "false")
    if done and d.completed_at is not None:
        sub(r, "completedDate", _ts(d.completed_at))
    sub(r, "createdBy", d.user_id[:15])
    sub(r, "createdByName", d.user_name)
    sub(r, "createdDate", _ts(d.created_at))
    details = sub(r, "details")
    if include and done:
        for m in d.failures:
            _message(sub(details, "componentFailures"), m, False)
        if not failed:
            for m in d.successes:
                _message(sub(details, "componentSuccesses"), m, True)
            pkg = {
                "componentType": "",
                "createdDate": _ts(d.completed_at or d.created_at),
                "fileName": "package.xml",
                "fullName": "package.xml",
            }
            _message(sub(details, "componentSuccesses"), pkg, True)
    sub(r, "done", "true" if done else "false")
    if d.error_message:
        sub(r, "errorMessage", d.error_message)
    sub(r, "id", d.id)
    sub(r, "ignoreWarnings", "true" if d.ignore_warnings else "false")
    sub(r, "lastModifiedDate", _ts(d.completed_at or d.created_at))
    sub(r, "numberComponentErrors", str(len(d.failures)))
    sub(r, "numberComponentsDeployed", str(0 if failed else len(d.successes)))
    sub(r, "numberComponentsTotal", str(len(d.failures) + len(d.successes)))
    for name in ("numberTestErrors", "numberTestsCompleted", "numberTestsTotal"):
        sub(r, name, "0")
    sub(r, "rollbackOnError", "true" if d.rollback_on_error else "false")
    sub(r, "runTestsEnabled", "false")
    sub(r, "startDate", _ts(d.created_at))
    sub(r, "status", ("Failed" if failed else "Succeeded") if done else "InProgress")
    sub(r, "success", "true" if done and not failed else "false")
    return resp
