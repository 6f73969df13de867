"""The SOAP 1.1 server core the SOAP simulators share: hardened envelope parsing (no DTD, no entities,
no network), faults, the signature check and the test controls (``rogue`` answers come from
``simulators.rogue``), and the WSDL at ``?wsdl``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web
from lxml import etree

from simulators import rogue
from simulators.common import CONTEXT, OutboundAuthError, SimulatorContext, check_signature

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_BODY_BYTES = 64 * 1024
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "wsdl"


IDCS_RE = re.compile(r"[0-9]{10}")

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

    async def call(request: web.Request) -> web.StreamResponse:
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
        with sim.control.track():
            if sim.control.delay_s > 0:
                await asyncio.sleep(sim.control.delay_s)
            if sim.control.fail:
                return fault_response(SoapFault("Server", "Service unavailable", 503))
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
            answer = _envelope(payload)
            if sim.control.rogue is not None:
                return await rogue.soap_reply(request, sim.control, sim.control.rogue, answer, namespace)
        return web.Response(body=answer, content_type="text/xml", charset="utf-8")

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
