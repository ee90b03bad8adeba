"""Metadata API over SOAP (lxml): createMetadata, readMetadata, deleteMetadata, deploy, checkDeployStatus."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from builder.salesforce.errors import SalesforceUnavailable, soap_fault
from builder.salesforce.rest import Access
from builder.salesforce.transport import Transport

SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
MET = "http://soap.sforce.com/2006/04/metadata"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP = {"soapenv": SOAPENV, "met": MET, "xsi": XSI}

Record = dict[str, Any]


@dataclass(frozen=True)
class ResultError:
    """One entry of a SaveResult/DeleteResult ``errors`` list."""

    status_code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class SaveResult:
    """createMetadata / deleteMetadata outcome for one component."""

    full_name: str
    success: bool
    errors: tuple[ResultError, ...] = ()

    def describe(self) -> str:
        return "; ".join(f"{e.status_code}: {e.message}" for e in self.errors) or "no detail"


@dataclass(frozen=True)
class DeployStatus:
    """checkDeployStatus outcome (only what the Builder needs)."""

    id: str
    done: bool
    status: str
    success: bool
    error_message: str = ""
    failures: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        return "; ".join(self.failures) or self.error_message or self.status


def _q(tag: str) -> str:
    return f"{{{MET}}}{tag}"


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _add_value(parent: etree._Element, name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, list | tuple):
        for item in value:
            _add_value(parent, name, item)
        return
    child = etree.SubElement(parent, _q(name))
    if isinstance(value, dict):
        for key in _ordered(value):
            _add_value(child, key, value[key])
    elif isinstance(value, bool):
        child.text = "true" if value else "false"
    else:
        child.text = str(value)


def _ordered(record: Record) -> list[str]:
    # Metadata WSDL sequences list fullName (from Metadata) first, then the type's fields alphabetically.
    return sorted(record, key=lambda k: (k != "fullName", k))


def metadata_element(parent: etree._Element, type_name: str, record: Record) -> None:
    """Append ``<met:metadata xsi:type="met:{type}">`` holding ``record`` (dicts nest, lists repeat)."""
    el = etree.SubElement(parent, _q("metadata"))
    el.set(f"{{{XSI}}}type", f"met:{type_name}")
    for key in _ordered(record):
        _add_value(el, key, record[key])


def envelope(session_id: str, body_builder: Any) -> bytes:
    """A SOAP 1.1 envelope with the SessionHeader; ``body_builder(body_element)`` fills the body."""
    env = etree.Element(f"{{{SOAPENV}}}Envelope", nsmap=NSMAP)
    header = etree.SubElement(env, f"{{{SOAPENV}}}Header")
    sh = etree.SubElement(header, _q("SessionHeader"))
    etree.SubElement(sh, _q("sessionId")).text = session_id
    body = etree.SubElement(env, f"{{{SOAPENV}}}Body")
    body_builder(body)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def element_to_value(el: etree._Element) -> Any:
    """Turn a response element into text, or a dict of children (repeated children become lists)."""
    children = [c for c in el if isinstance(c.tag, str)]
    if not children:
        nil = el.get(f"{{{XSI}}}nil")
        return None if nil == "true" else (el.text or "")
    out: dict[str, Any] = {}
    for child in children:
        name = _local(child)
        value = element_to_value(child)
        if name in out:
            if not isinstance(out[name], list):
                out[name] = [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    return out


def as_list(value: Any) -> list[Any]:
    """A repeated element read back as a list whatever its count."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _results(body: etree._Element, response_tag: str) -> list[etree._Element]:
    response = body.find(_q(response_tag))
    if response is None:
        response = next((c for c in body if isinstance(c.tag, str) and _local(c) == response_tag), None)
    if response is None:
        raise SalesforceUnavailable(f"Metadata API answered without {response_tag}")
    return [c for c in response if isinstance(c.tag, str) and _local(c) == "result"]


def _save_result(el: etree._Element) -> SaveResult:
    data = element_to_value(el)
    data = data if isinstance(data, dict) else {}
    errors = tuple(
        ResultError(
            str(e.get("statusCode", "")),
            str(e.get("message", "")),
            tuple(str(f) for f in as_list(e.get("fields"))),
        )
        for e in as_list(data.get("errors"))
        if isinstance(e, dict)
    )
    return SaveResult(str(data.get("fullName", "")), str(data.get("success", "")).lower() == "true", errors)


@dataclass
class MetadataApi:
    """The Metadata SOAP endpoint of one API version at ``{instance_url}/services/Soap/m/{version}``."""

    transport: Transport
    api_version: str

    async def _call(self, access: Access, action: str, fill: Any) -> etree._Element:
        url = f"{access.instance_url.rstrip('/')}/services/Soap/m/{self.api_version}"
        payload = envelope(access.access_token, fill)
        resp = await self.transport.request(
            "POST",
            url,
            operation=f"metadata_{action}",
            data=payload,
            headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": action},
        )
        try:
            root = etree.fromstring(resp.text.encode("utf-8"), parser=etree.XMLParser(resolve_entities=False))
        except etree.XMLSyntaxError:
            if resp.status >= 500 or resp.status in (408, 429):
                raise SalesforceUnavailable(f"Metadata API {action} answered HTTP {resp.status}") from None
            raise SalesforceUnavailable(
                f"Metadata API {action} answered HTTP {resp.status} with a body that is not XML"
            ) from None
        body = root.find(f"{{{SOAPENV}}}Body")
        if body is None:
            raise SalesforceUnavailable(f"Metadata API {action} answered without a SOAP body")
        fault = body.find(f"{{{SOAPENV}}}Fault")
        if fault is not None:
            parts = {_local(c): (c.text or "") for c in fault if isinstance(c.tag, str)}
            raise soap_fault(parts.get("faultcode", ""), parts.get("faultstring", ""), operation=action)
        if resp.status >= 400:
            raise SalesforceUnavailable(f"Metadata API {action} answered HTTP {resp.status}")
        return body

    async def create(self, access: Access, type_name: str, records: list[Record]) -> list[SaveResult]:
        """createMetadata for up to 10 components of one type."""

        def fill(body: etree._Element) -> None:
            call = etree.SubElement(body, _q("createMetadata"))
            for record in records:
                metadata_element(call, type_name, record)

        body = await self._call(access, "createMetadata", fill)
        return [_save_result(r) for r in _results(body, "createMetadataResponse")]

    async def read(self, access: Access, type_name: str, full_names: list[str]) -> list[Record]:
        """readMetadata; components that do not exist are simply absent from the answer."""

        def fill(body: etree._Element) -> None:
            call = etree.SubElement(body, _q("readMetadata"))
            etree.SubElement(call, _q("type")).text = type_name
            for name in full_names:
                etree.SubElement(call, _q("fullNames")).text = name

        body = await self._call(access, "readMetadata", fill)
        records: list[Record] = []
        for result in _results(body, "readMetadataResponse"):
            for rec in result:
                if not isinstance(rec.tag, str) or _local(rec) != "records":
                    continue
                if rec.get(f"{{{XSI}}}nil") == "true":
                    continue
                value = element_to_value(rec)
                if isinstance(value, dict) and value.get("fullName"):
                    records.append(value)
        return records

    async def delete(self, access: Access, type_name: str, full_names: list[str]) -> list[SaveResult]:
        """deleteMetadata (cascades to dependent settings)."""

        def fill(body: etree._Element) -> None:
            call = etree.SubElement(body, _q("deleteMetadata"))
            etree.SubElement(call, _q("type")).text = type_name
            for name in full_names:
                etree.SubElement(call, _q("fullNames")).text = name

        body = await self._call(access, "deleteMetadata", fill)
        return [_save_result(r) for r in _results(body, "deleteMetadataResponse")]

    async def deploy(self, access: Access, zip_bytes: bytes) -> str:
        """Start a deploy of a single-package zip; returns the async process id."""

        def fill(body: etree._Element) -> None:
            call = etree.SubElement(body, _q("deploy"))
            etree.SubElement(call, _q("ZipFile")).text = base64.b64encode(zip_bytes).decode()
            _add_value(
                call,
                "DeployOptions",
                {
                    "allowMissingFiles": False,
                    "autoUpdatePackage": False,
                    "checkOnly": False,
                    "ignoreWarnings": False,
                    "performRetrieve": False,
                    "purgeOnDelete": False,
                    "rollbackOnError": True,
                    "singlePackage": True,
                    "testLevel": "NoTestRun",
                },
            )

        body = await self._call(access, "deploy", fill)
        results = _results(body, "deployResponse")
        deploy_id = element_to_value(results[0]).get("id") if results else None
        if not deploy_id:
            raise SalesforceUnavailable("Metadata API deploy answered without an id")
        return str(deploy_id)

    async def check_deploy_status(self, access: Access, deploy_id: str) -> DeployStatus:
        """checkDeployStatus with details: component failures become readable lines."""

        def fill(body: etree._Element) -> None:
            call = etree.SubElement(body, _q("checkDeployStatus"))
            etree.SubElement(call, _q("asyncProcessId")).text = deploy_id
            etree.SubElement(call, _q("includeDetails")).text = "true"

        body = await self._call(access, "checkDeployStatus", fill)
        results = _results(body, "checkDeployStatusResponse")
        data = element_to_value(results[0]) if results else {}
        data = data if isinstance(data, dict) else {}
        details = data.get("details") if isinstance(data.get("details"), dict) else {}
        failures = tuple(
            f"{f.get('componentType', '')} {f.get('fullName', '')}: {f.get('problem', '')}".strip()
            for f in as_list(details.get("componentFailures") if details else None)
            if isinstance(f, dict)
        )
        return DeployStatus(
            id=str(data.get("id", deploy_id)),
            done=str(data.get("done", "")).lower() == "true",
            status=str(data.get("status", "")),
            success=str(data.get("success", "")).lower() == "true",
            error_message=str(data.get("errorMessage", "") or ""),
            failures=failures,
        )
