"""CNSS health insurance (AMO) as a SOAP 1.1 server: ``GetCoverage``.

Contract: ``schemas/wsdl/health_amo.wsdl`` (served at ``GET /amo/soap?wsdl``); calls are ``POST
/amo/soap``. Answers come from the synthetic ``Population``; an unknown subject is ``NOT_FOUND``. The SOAP
machinery (signature, control knobs, hardened parsing, faults) is the shared core in
``simulators.civil_registry``.
"""

from __future__ import annotations

from aiohttp import web
from lxml import etree

from simulators.common import SimulatorContext
from simulators.soap_server import IDCS_RE, SCHEMAS, SoapFault, add, child_text, soap_app

NAMESPACE = "urn:ma:cnss:amo:1"
PATH = "/amo/soap"
WSDL_FILE = SCHEMAS / "health_amo.wsdl"

_SCHEMES = {"amo_tadamon": "AMO_TADAMON", "amo_contributory": "AMO_CONTRIBUTORY", "none": "NONE"}
_STATUSES = {"active": "ACTIVE", "inactive": "INACTIVE"}


def get_coverage(ctx: SimulatorContext, request: etree._Element) -> etree._Element:
    idcs = child_text(request, NAMESPACE, "idcs")
    if idcs is None or not IDCS_RE.fullmatch(idcs):
        raise SoapFault("Client", "Invalid request: idcs must be 10 digits")
    coverage = ctx.population.coverage(idcs)
    response = etree.Element(etree.QName(NAMESPACE, "GetCoverageResponse"), nsmap={"amo": NAMESPACE})
    add(response, NAMESPACE, "status", "FOUND" if coverage else "NOT_FOUND")
    add(response, NAMESPACE, "idcs", idcs)
    if coverage is not None:
        element = etree.SubElement(response, etree.QName(NAMESPACE, "coverage"))
        add(element, NAMESPACE, "scheme", _SCHEMES[coverage.scheme])
        add(element, NAMESPACE, "coverageStatus", _STATUSES[coverage.status])
        add(element, NAMESPACE, "since", coverage.since.isoformat() if coverage.since else None)
        add(element, NAMESPACE, "severeDisability", coverage.severe_disability)
    return response


def build_app(ctx: SimulatorContext) -> web.Application:
    return soap_app(ctx, PATH, WSDL_FILE, NAMESPACE, {"GetCoverage": get_coverage})


__all__ = ["NAMESPACE", "PATH", "WSDL_FILE", "build_app"]
