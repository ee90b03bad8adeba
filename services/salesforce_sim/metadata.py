"""Metadata API SOAP endpoint (``/services/Soap/m/NN.N``): CRUD calls, deploy and checkDeployStatus."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from lxml import etree

from . import apps, deploy, mdtypes
from .common import API_VERSIONS, AUTH, Auth, authenticate, state_of
from .soap import (
    INVALID_SESSION,
    MD,
    XSI,
    Envelope,
    SoapFault,
    fault_response,
    parse_envelope,
    response_element,
    soap_response,
    sub,
)
from .state import RecordError

MAX_COMPONENTS = 10
Operation = Callable[[web.Request, Auth, Envelope], etree._Element]


def _error(parent: etree._Element, exc: RecordError) -> None:
    err = sub(parent, "errors")
    for field in exc.fields:
        sub(err, "fields", field)
    sub(err, "message", exc.message)
    sub(err, "statusCode", exc.status_code)


def _result(parent: etree._Element, full_name: str, error: RecordError | None) -> None:
    result = sub(parent, "result")
    if error is not None:
        _error(result, error)
    sub(result, "fullName", full_name)
    sub(result, "success", "false" if error else "true")


def _declared_type(el: etree._Element) -> str:
    raw = el.get(f"{{{XSI}}}type")
    if not raw:
        raise SoapFault(
            "soapenv:Client", "Must specify a type for metadata: add xsi:type (e.g. met:ConnectedApp)"
        )
    prefix, _, local = raw.rpartition(":")
    if el.nsmap.get(prefix or None) != MD:
        raise SoapFault("soapenv:Client", f"Unknown type {raw}: it must be in the namespace {MD}")
    if local not in apps.SUPPORTED:
        raise SoapFault("sf:INVALID_TYPE", f"The simulator does not support metadata type {local}")
    return local


def _names(op: etree._Element) -> tuple[str, list[str]]:
    type_name = (op.findtext(f"{{{MD}}}type") or "").strip()
    names = [(n.text or "").strip() for n in op.findall(f"{{{MD}}}fullNames")]
    if type_name not in apps.SUPPORTED:
        raise SoapFault(
            "sf:INVALID_TYPE", f"The simulator does not support metadata type {type_name or '(none)'}"
        )
    if len(names) > MAX_COMPONENTS:
        raise SoapFault("sf:LIMIT_EXCEEDED", f"Too many fullNames: the limit is {MAX_COMPONENTS} per call")
    return type_name, names


def create_metadata(request: web.Request, auth: Auth, env: Envelope) -> etree._Element:
    state, org = state_of(request), auth.org
    items = [c for c in env.operation if isinstance(c.tag, str) and etree.QName(c).localname == "metadata"]
    if len(items) > MAX_COMPONENTS:
        raise SoapFault("sf:LIMIT_EXCEEDED", f"Too many components: the limit is {MAX_COMPONENTS} per call")
    typed = [(el, _declared_type(el)) for el in items]
    if len({t for _, t in typed}) > 1:
        raise SoapFault("soapenv:Client", "All components in a createMetadata call must be of the same type")
    records = [mdtypes.parse(el, t) for el, t in typed]
    snapshot = org.snapshot() if env.all_or_none else None
    outcomes: list[tuple[str, RecordError | None]] = []
    for (_, type_name), record in zip(typed, records, strict=True):
        try:
            apps.save(state, org, type_name, record, "create")
            outcomes.append((str(record.get("fullName", "")), None))
        except RecordError as exc:
            outcomes.append((str(record.get("fullName", "")), exc))
    if snapshot is not None and any(err for _, err in outcomes):
        org.restore(snapshot)
        rolled = RecordError(
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "Record rolled back because not all records were valid and the request was using AllOrNone header",
        )
        outcomes = [(name, err or rolled) for name, err in outcomes]
    resp = response_element("createMetadata")
    for name, err in outcomes:
        _result(resp, name, err)
    return resp


def read_metadata(request: web.Request, auth: Auth, env: Envelope) -> etree._Element:
    type_name, names = _names(env.operation)
    resp = response_element("readMetadata")
    result = sub(resp, "result")
    for name in names:
        record = apps.read(auth.org, type_name, name)
        el = sub(result, "records")
        if record is None:
            continue  # a missing component is an empty record (base type Metadata, no fullName)
        el.set(f"{{{XSI}}}type", type_name)
        mdtypes.write(el, record, type_name)
    return resp


def delete_metadata(request: web.Request, auth: Auth, env: Envelope) -> etree._Element:
    state = state_of(request)
    type_name, names = _names(env.operation)
    resp = response_element("deleteMetadata")
    for name in names:
        try:
            apps.delete(state, auth.org, type_name, name)
            _result(resp, name, None)
        except RecordError as exc:
            _result(resp, name, exc)
    return resp


OPERATIONS: dict[str, Operation] = {
    "createMetadata": create_metadata,
    "readMetadata": read_metadata,
    "deleteMetadata": delete_metadata,
    "deploy": deploy.deploy,
    "checkDeployStatus": deploy.check_deploy_status,
}


async def soap(request: web.Request) -> web.Response:
    """Dispatch one SOAP call by the name of the element inside the Body."""
    version = request.match_info["version"]
    if version not in API_VERSIONS:
        return fault_response(
            "sf:UNSUPPORTED_API_VERSION", f"Invalid Api version specified on URL: {version}"
        )
    try:
        env = parse_envelope(await request.read())
        auth = request.get(AUTH) or authenticate(request, env.session_id)
        if auth is None:
            return fault_response(*INVALID_SESSION)
        qname = etree.QName(env.operation)
        operation = OPERATIONS.get(qname.localname) if qname.namespace == MD else None
        if operation is None:
            raise SoapFault(
                "soapenv:Client",
                f"No operation available for request {{{qname.namespace}}}{qname.localname}, "
                "please check the WSDL for the service.",
            )
        return soap_response(operation(request, auth, env))
    except SoapFault as fault:
        return fault_response(fault.code, fault.message)
