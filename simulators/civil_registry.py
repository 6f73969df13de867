"""The civil registry (RNP / état civil) as a SOAP 1.1 server: ``GetPerson`` and ``GetFamily``.

Contract: ``schemas/wsdl/civil_registry.wsdl`` (served at ``GET /rnp/soap?wsdl``); calls are ``POST
/rnp/soap``. Answers come from the synthetic ``Population``; an unknown subject is ``NOT_FOUND``.
The shared SOAP-server core lives in ``simulators/soap_server.py``.
"""

from __future__ import annotations

import re

from aiohttp import web
from lxml import etree

from simulators.common import SimulatorContext
from simulators.population import Person
from simulators.soap_server import IDCS_RE, SCHEMAS, SoapFault, add, child_text, soap_app

NAMESPACE = "urn:ma:rnp:etatcivil:1"
PATH = "/rnp/soap"
WSDL_FILE = SCHEMAS / "civil_registry.wsdl"
CIN_RE = re.compile(r"[A-Za-z]{1,2}[0-9]{5,6}")


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


__all__ = ["NAMESPACE", "PATH", "WSDL_FILE", "build_app"]
