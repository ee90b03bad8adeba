"""Metadata API SOAP endpoint (``/services/Soap/m/NN.N``)."""

from __future__ import annotations

from aiohttp import web

from .common import API_VERSIONS, AUTH, authenticate
from .soap import INVALID_SESSION, SoapFault, fault_response, parse_envelope


async def soap(request: web.Request) -> web.Response:
    """Dispatch one SOAP call by the name of the element inside the Body."""
    version = request.match_info["version"]
    if version not in API_VERSIONS:
        return fault_response(
            "sf:UNSUPPORTED_API_VERSION", f"Invalid Api version specified on URL: {version}"
        )
    try:
        env = parse_envelope(await request.read())
    except SoapFault as fault:
        return fault_response(fault.code, fault.message)
    auth = request.get(AUTH) or authenticate(request, env.session_id)
    if auth is None:
        return fault_response(*INVALID_SESSION)
    return fault_response("soapenv:Client", "Operation not supported yet")
