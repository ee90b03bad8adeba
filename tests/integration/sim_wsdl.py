"""Validate SOAP messages against the SOAP 1.1 envelope schema plus the XSD inside simple-salesforce's WSDL."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import simple_salesforce
import xmlschema
from lxml import etree

MD = "http://soap.sforce.com/2006/04/metadata"
XSD = "http://www.w3.org/2001/XMLSchema"
SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL = Path(simple_salesforce.__file__).parent / "metadata.wsdl"
ENVELOPE_XSD = Path(xmlschema.__file__).parent / "schemas" / "WSDL" / "soap-envelope.xsd"


@functools.cache
def schema() -> etree.XMLSchema:
    """One schema: the SOAP envelope (lax Header/Body content) importing the WSDL's metadata schema.

    Lax processing means every Header and Body child with a declaration in the metadata schema (all the
    Metadata API request and response elements) is validated strictly; soapenv:Fault is checked by the
    envelope schema itself.
    """
    wsdl_schema = etree.parse(str(WSDL)).getroot().find(f".//{{{XSD}}}schema")
    assert wsdl_schema is not None
    # The WSDL declares the tns prefix on <definitions>; carry it onto the standalone schema.
    standalone = etree.Element(
        wsdl_schema.tag, attrib=dict(wsdl_schema.attrib), nsmap={"xsd": XSD, "tns": MD}
    )
    standalone.extend(list(wsdl_schema))
    tmp = Path(tempfile.mkdtemp(prefix="sim-wsdl-"))
    (tmp / "metadata.xsd").write_bytes(etree.tostring(standalone))
    wrapper = f"""<xs:schema xmlns:xs="{XSD}" targetNamespace="urn:sim-test:wrapper">
      <xs:import namespace="{SOAPENV}" schemaLocation="{ENVELOPE_XSD.as_uri()}"/>
      <xs:import namespace="{MD}" schemaLocation="{(tmp / "metadata.xsd").as_uri()}"/>
    </xs:schema>"""
    (tmp / "wrapper.xsd").write_text(wrapper)
    return etree.XMLSchema(etree.parse(str(tmp / "wrapper.xsd")))


def validate(message: bytes) -> None:
    """Raise AssertionError naming the first schema violation of this SOAP message."""
    doc = etree.fromstring(message)
    assert doc.tag == f"{{{SOAPENV}}}Envelope", doc.tag
    body = doc.find(f"{{{SOAPENV}}}Body")
    assert body is not None and len(body) == 1
    payload = body[0]
    if payload.tag != f"{{{SOAPENV}}}Fault":
        # Lax validation would silently skip an element the metadata schema does not declare.
        assert etree.QName(payload).namespace == MD, payload.tag
        assert schema_declares(etree.QName(payload).localname), payload.tag
    else:
        code = payload.findtext("faultcode") or ""
        prefix = code.split(":", 1)[0]
        assert payload.nsmap.get(prefix) or doc.nsmap.get(prefix), (
            f"faultcode prefix {prefix!r} is not declared"
        )
    checker = schema()
    if not checker.validate(doc):
        raise AssertionError(f"SOAP message does not validate: {checker.error_log.last_error}")


@functools.cache
def _declared() -> frozenset[str]:
    root = etree.parse(str(WSDL)).getroot().find(f".//{{{XSD}}}schema")
    assert root is not None
    return frozenset(el.get("name") for el in root.findall(f"{{{XSD}}}element"))


def schema_declares(name: str) -> bool:
    return name in _declared()
