"""The civil registry (RNP / état civil) as a SOAP 1.1 server: ``GetPerson`` and ``GetFamily``.

Contract: ``schemas/wsdl/civil_registry.wsdl`` (served at ``GET /rnp/soap?wsdl``); calls are ``POST
/rnp/soap``. Answers come from the synthetic ``Population``; an unknown subject is ``NOT_FOUND``.

This module also owns the small SOAP-server core the SOAP simulators share (``soap_app``, ``SoapFault``,
``child_text``): body cap, signature check, ``SimulatorControl`` knobs, a hardened lxml parse that refuses
any DOCTYPE, dispatch on the body element, and SOAP 1.1 faults. It is a plain lxml server on purpose:
zeep is a client library, and the gateway's side is what the tests exercise.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web
from lxml import etree

from simulators.common import CONTEXT, OutboundAuthError, SimulatorContext, check_signature
from simulators.population import Person

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_BODY_BYTES = 64 * 1024
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "wsdl"

NAMESPACE = "urn:ma:rnp:etatcivil:1"
PATH = "/rnp/soap"
WSDL_FILE = SCHEMAS / "civil_registry.wsdl"

IDCS_RE = re.compile(r"[0-9]{10}")
CIN_RE = re.compile(r"[A-Za-z]{1,2}[0-9]{5,6}")

# An operation handler gets the simulator context and the request's body element; returns the response
# element (in the operation's namespace) or raises ``SoapFault``.
OperationHandler = Callable[[SimulatorContext, etree._Element], etree._Element]


# ---------------------------------------------------------------- the shared SOAP-server core


class SoapFault(Exception):
    """A SOAP 1.1 fault to send back: ``code`` is ``Client`` or ``Server``."""

    def __init__(self, code: str, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
    )


def _envelope(payload: etree._Element) -> bytes:
    envelope = etree.Element(etree.QName(SOAP_ENV, "Envelope"), nsmap={"soap": SOAP_ENV})
    etree.SubElement(envelope, etree.QName(SOAP_ENV, "Body")).append(payload)
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def fault_response(fault: SoapFault) -> web.Response:
    body = etree.Element(etree.QName(SOAP_ENV, "Fault"), nsmap={"soap": SOAP_ENV})
    etree.SubElement(body, "faultcode").text = f"soap:{fault.code}"
    etree.SubElement(body, "faultstring").text = fault.message
    return web.Response(status=fault.status, body=_envelope(body), content_type="text/xml", charset="utf-8")


def _parse_envelope(body: bytes, namespace: str) -> etree._Element:
    """The body's operation element; ``SoapFault`` (Client) for anything that is not a clean envelope."""
    if b"<!DOCTYPE" in body:
        raise SoapFault("Client", "DTD not allowed")
    try:
        root = etree.fromstring(body, parser=_parser())
    except etree.XMLSyntaxError:
        raise SoapFault("Client", "Malformed envelope") from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise SoapFault("Client", "DTD not allowed")
    if root.tag != etree.QName(SOAP_ENV, "Envelope").text:
        raise SoapFault("Client", "Not a SOAP 1.1 envelope")
    soap_body = root.find(etree.QName(SOAP_ENV, "Body").text)
    elements = [] if soap_body is None else [child for child in soap_body if isinstance(child.tag, str)]
    if len(elements) != 1:
        raise SoapFault("Client", "The SOAP body must hold exactly one operation")
    operation = elements[0]
    if etree.QName(operation).namespace != namespace:
        raise SoapFault("Client", "Unknown operation")
    return operation


def child_text(element: etree._Element, namespace: str, name: str) -> str | None:
    child = element.find(etree.QName(namespace, name).text)
    return None if child is None else (child.text or "").strip()


def add(parent: etree._Element, namespace: str, name: str, value: str | bool | None) -> None:
    """Append ``<name>value</name>``; ``None`` leaves the (optional) element out."""
    if value is None:
        return
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    etree.SubElement(parent, etree.QName(namespace, name)).text = text


def soap_app(
    ctx: SimulatorContext,
    path: str,
    wsdl_file: Path,
    namespace: str,
    operations: Mapping[str, OperationHandler],
) -> web.Application:
    """An application serving ``operations`` (by body element name) at ``path`` and the WSDL at ``?wsdl``."""

    async def call(request: web.Request) -> web.Response:
        sim = request.app[CONTEXT]
        sim.control.calls += 1
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return fault_response(SoapFault("Client", "Request too large", 413))
        try:
            await check_signature(request, body)
        except OutboundAuthError:
            return fault_response(SoapFault("Client", "Unauthorized", 401))
        if sim.control.delay_s > 0:
            await asyncio.sleep(sim.control.delay_s)
        if sim.control.fail:
            return fault_response(SoapFault("Server", "Service unavailable"))
        try:
            element = _parse_envelope(body, namespace)
            name = etree.QName(element).localname
            handler = operations.get(name)
            if handler is None:
                raise SoapFault("Client", "Unknown operation")
            action = request.headers.get("SOAPAction", "").strip().strip('"')
            if action and action != f"{namespace}#{name}":
                raise SoapFault("Client", "SOAPAction does not match the operation")
            payload = handler(sim, element)
        except SoapFault as fault:
            return fault_response(fault)
        return web.Response(body=_envelope(payload), content_type="text/xml", charset="utf-8")

    async def wsdl(request: web.Request) -> web.Response:
        if "wsdl" not in request.query:
            raise web.HTTPNotFound()
        return web.Response(body=wsdl_file.read_bytes(), content_type="text/xml", charset="utf-8")

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[CONTEXT] = ctx
    app.router.add_post(path, call)
    app.router.add_get(path, wsdl)
    return app


# ---------------------------------------------------------------- the civil registry


def _q(name: str) -> etree.QName:
    return etree.QName(NAMESPACE, name)


def _subject_idcs(request: etree._Element) -> str:
    idcs = child_text(request, NAMESPACE, "idcs")
    if idcs is None or not IDCS_RE.fullmatch(idcs):
        raise SoapFault("Client", "Invalid request: idcs must be 10 digits")
    return idcs


def _person(parent: etree._Element, person: Person) -> None:
    element = etree.SubElement(parent, _q("person"))
    for name, value in (
        ("idcs", person.idcs),
        ("cin", person.cin),
        ("firstName", person.first_name),
        ("firstNameAr", person.first_name_ar),
        ("lastName", person.last_name),
        ("lastNameAr", person.last_name_ar),
        ("sex", person.sex),
        ("birthDate", person.birth_date.isoformat()),
        ("alive", person.alive),
        ("deathDate", person.death_date.isoformat() if person.death_date else None),
        ("fatherIdcs", person.father_idcs),
        ("motherIdcs", person.mother_idcs),
    ):
        add(element, NAMESPACE, name, value)


def _members(parent: etree._Element, name: str, people: tuple[Person, ...]) -> None:
    group = etree.SubElement(parent, _q(name))
    for person in people:
        member = etree.SubElement(group, _q("member"))
        add(member, NAMESPACE, "idcs", person.idcs)
        add(member, NAMESPACE, "firstName", person.first_name)
        add(member, NAMESPACE, "lastName", person.last_name)
        add(member, NAMESPACE, "sex", person.sex)
        add(member, NAMESPACE, "birthDate", person.birth_date.isoformat())
        add(member, NAMESPACE, "alive", person.alive)
        add(member, NAMESPACE, "deathDate", person.death_date.isoformat() if person.death_date else None)


def get_person(ctx: SimulatorContext, request: etree._Element) -> etree._Element:
    idcs = child_text(request, NAMESPACE, "idcs")
    cin = child_text(request, NAMESPACE, "cin")
    if (idcs is None) == (cin is None):
        raise SoapFault("Client", "Invalid request: exactly one of idcs or cin")
    if idcs is not None:
        person = ctx.population.person(_subject_idcs(request))
    else:
        assert cin is not None
        if not CIN_RE.fullmatch(cin):
            raise SoapFault("Client", "Invalid request: malformed cin")
        person = ctx.population.person_by_cin(cin)
    response = etree.Element(_q("GetPersonResponse"), nsmap={"rnp": NAMESPACE})
    add(response, NAMESPACE, "status", "FOUND" if person else "NOT_FOUND")
    if person is not None:
        _person(response, person)
    return response


def get_family(ctx: SimulatorContext, request: etree._Element) -> etree._Element:
    idcs = _subject_idcs(request)
    family = ctx.population.family(idcs)
    response = etree.Element(_q("GetFamilyResponse"), nsmap={"rnp": NAMESPACE})
    add(response, NAMESPACE, "status", "FOUND" if family else "NOT_FOUND")
    add(response, NAMESPACE, "idcs", idcs)
    spouses, children = family or ((), ())
    _members(response, "spouses", spouses)
    _members(response, "children", children)
    return response


def build_app(ctx: SimulatorContext) -> web.Application:
    return soap_app(ctx, PATH, WSDL_FILE, NAMESPACE, {"GetPerson": get_person, "GetFamily": get_family})


__all__ = [
    "IDCS_RE",
    "NAMESPACE",
    "PATH",
    "SCHEMAS",
    "WSDL_FILE",
    "OperationHandler",
    "SoapFault",
    "add",
    "build_app",
    "child_text",
    "fault_response",
    "soap_app",
]
