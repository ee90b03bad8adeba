"""SOAP 1.1 envelopes for the Metadata API: parsing requests, writing responses and faults (lxml)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from lxml import etree

SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
MD = "http://soap.sforce.com/2006/04/metadata"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"

PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, huge_tree=False)


class SoapFault(Exception):
    """A fault to answer with: ``code`` is ``sf:NAME`` or ``soapenv:Client``/``soapenv:Server``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Envelope:
    session_id: str | None
    operation: etree._Element  # the first element inside soapenv:Body
    all_or_none: bool = False


def parse_envelope(body: bytes) -> Envelope:
    try:
        root = etree.fromstring(body, PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapFault("soapenv:Client", f"Unable to parse the request: {exc.msg}") from None
    if root.tag != f"{{{SOAPENV}}}Envelope":
        raise SoapFault("soapenv:Client", "The request is not a SOAP 1.1 Envelope")
    session = root.find(f"{{{SOAPENV}}}Header/{{{MD}}}SessionHeader/{{{MD}}}sessionId")
    body_el = root.find(f"{{{SOAPENV}}}Body")
    operation = next((c for c in body_el if isinstance(c.tag, str)), None) if body_el is not None else None
    if operation is None:
        raise SoapFault("soapenv:Client", "The SOAP Body is empty")
    session_id = (session.text or "").strip() if session is not None else None
    all_or_none = root.findtext(f"{{{SOAPENV}}}Header/{{{MD}}}AllOrNoneHeader/{{{MD}}}allOrNone", "").strip()
    return Envelope(session_id or None, operation, all_or_none in ("true", "1"))


def session_id_of(body: bytes) -> str | None:
    """The SessionHeader's sessionId, or None when the body is not a readable envelope."""
    try:
        return parse_envelope(body).session_id
    except SoapFault:
        return None


def md(tag: str) -> str:
    return f"{{{MD}}}{tag}"


def sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, md(tag))
    if text is not None:
        el.text = text
    return el


def response_element(operation: str) -> etree._Element:
    """``<{operation}Response>`` with the metadata namespace as default (so xsi:type="X" resolves)."""
    return etree.Element(md(f"{operation}Response"), nsmap={None: MD, "xsi": XSI})


def envelope_bytes(payload: etree._Element) -> bytes:
    env = etree.Element(f"{{{SOAPENV}}}Envelope", nsmap={"soapenv": SOAPENV, "xsi": XSI})
    body = etree.SubElement(env, f"{{{SOAPENV}}}Body")
    body.append(payload)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def soap_response(payload: etree._Element) -> web.Response:
    return web.Response(body=envelope_bytes(payload), content_type="text/xml", charset="utf-8")


def fault_response(code: str, message: str) -> web.Response:
    """HTTP 500 with a SOAP Fault; ``sf:`` codes are qualified in the metadata namespace."""
    env = etree.Element(f"{{{SOAPENV}}}Envelope", nsmap={"soapenv": SOAPENV, "sf": MD})
    body = etree.SubElement(env, f"{{{SOAPENV}}}Body")
    fault = etree.SubElement(body, f"{{{SOAPENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    name = code.split(":", 1)[1] if code.startswith("sf:") else None
    etree.SubElement(fault, "faultstring").text = f"{name}: {message}" if name else message
    if name:
        # Salesforce's API faults carry the code and message again in an UnexpectedErrorFault detail.
        detail = etree.SubElement(etree.SubElement(fault, "detail"), md("UnexpectedErrorFault"))
        sub(detail, "exceptionCode", name)
        sub(detail, "exceptionMessage", message)
    data = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
    return web.Response(status=500, body=data, content_type="text/xml", charset="utf-8")


INVALID_SESSION = ("sf:INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader: Illegal Session")
LIMIT_EXCEEDED = ("sf:REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
