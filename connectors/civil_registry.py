"""Mapping of the civil registry (RNP / état civil, SOAP) onto the ``person`` and ``family`` records.

Owns how the gateway's ``person`` (by ``idcs`` or ``cin``) and ``family`` (by ``idcs``) operations become
``GetPerson`` / ``GetFamily`` calls (``schemas/wsdl/civil_registry.wsdl``) and how their replies become
the canonical records of ``schemas/records/person.json`` and ``family.json``. A reply with status
``NOT_FOUND`` maps to None (the subject is unknown); anything off-contract raises, and the connector
reports the source unavailable. Nothing is ever filled in by guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.soap import SoapOperation, boolean, found, iso_date, optional_iso_date, optional_text, text


def _person_args(params: Mapping[str, str]) -> dict[str, Any]:
    if "idcs" in params:
        return {"idcs": params["idcs"]}
    if "cin" in params:
        return {"cin": params["cin"]}
    raise KeyError("idcs or cin")


def _family_args(params: Mapping[str, str]) -> dict[str, Any]:
    return {"idcs": params["idcs"]}


def _person_record(reply: Any) -> dict[str, Any] | None:
    if not found(reply):
        return None
    p = reply.person
    if p is None:
        raise ValueError("FOUND without a person")
    return {
        "idcs": text(p.idcs),
        "cin": optional_text(p.cin),
        "first_name": text(p.firstName),
        "first_name_ar": text(p.firstNameAr),
        "last_name": text(p.lastName),
        "last_name_ar": text(p.lastNameAr),
        "sex": text(p.sex),
        "birth_date": iso_date(p.birthDate),
        "alive": boolean(p.alive),
        "death_date": optional_iso_date(p.deathDate),
        "father_idcs": optional_text(p.fatherIdcs),
        "mother_idcs": optional_text(p.motherIdcs),
    }


def _member(m: Any) -> dict[str, Any]:
    return {
        "idcs": text(m.idcs),
        "first_name": text(m.firstName),
        "last_name": text(m.lastName),
        "sex": text(m.sex),
        "birth_date": iso_date(m.birthDate),
        "alive": boolean(m.alive),
        "death_date": optional_iso_date(m.deathDate),
    }


def _members(group: Any) -> list[dict[str, Any]]:
    # The WSDL makes both lists required; zeep reads an empty one (``<spouses/>``) as None.
    return [] if group is None else [_member(m) for m in group.member]


def _family_record(reply: Any) -> dict[str, Any] | None:
    if not found(reply):
        return None
    return {
        "idcs": text(reply.idcs),
        "spouses": _members(reply.spouses),
        "children": _members(reply.children),
    }


OPERATIONS: dict[str, SoapOperation] = {
    "person": SoapOperation("GetPerson", "person", _person_args, _person_record),
    "family": SoapOperation("GetFamily", "family", _family_args, _family_record),
}

__all__ = ["OPERATIONS"]
