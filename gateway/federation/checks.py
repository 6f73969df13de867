"""The five checks: from the gathered evidence to facts (each naming its source and retrieval time) and a
plain verdict. A check whose required answers are missing says ``unavailable``; one that lost only some
answers says ``partial`` and lists what it could not verify.

Verdicts (see ``schemas/verification-response.json``):
- identity: the subject is known, alive or not, age.
- household: members, whether the father is deceased, children under 21.
- schooling: each child aged 6–20 enrolled this school year or not.
- health_coverage: AMO scheme (Tadamon / contributory / none) and status; members with a severe disability.
- employment: salaried work declared to the CNSS in the last 6 complete months, per parent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from connectors.base import ConnectorError, Record, SourceNotFound
from gateway.federation.calendar import age_on, last_complete_months
from gateway.federation.executor import Evidence

Result = dict[str, Any]


def _fact(name: str, value: Any, about: str, record: Record) -> dict[str, Any]:
    return {"name": name, "value": value, "about": about, "source": record.source,
            "retrieved_at": record.retrieved_at.isoformat(timespec="milliseconds")}


def _unavailable(*sources: str) -> Result:
    return {"status": "unavailable", "verdict": None, "facts": [], "unverified": list(sources)}


def _members(evidence: Evidence) -> tuple[Record | None, Record | None]:
    return evidence.record("person", evidence.subject_idcs), evidence.record("family", evidence.subject_idcs)


def identity(evidence: Evidence) -> Result:
    person = evidence.record("person", evidence.subject_idcs)
    if person is None:
        return _unavailable("civil_registry")
    p = person.data
    facts = [_fact(k, p[k], p["idcs"], person) for k in (
        "idcs", "cin", "first_name", "last_name", "first_name_ar", "last_name_ar", "sex", "birth_date",
        "alive", "death_date")]
    # a deceased person's age is the age they died at, not the age they would have reached today
    age_date = date.fromisoformat(p["death_date"]) if not p["alive"] and p.get("death_date") else evidence.today
    verdict = {"known": True, "alive": p["alive"], "age": age_on(date.fromisoformat(p["birth_date"]), age_date)}
    return {"status": "verified", "verdict": verdict, "facts": facts, "unverified": []}


def household(evidence: Evidence) -> Result:
    person, family = _members(evidence)
    if person is None or family is None:
        return _unavailable("civil_registry")
    subject = person.data
    facts: list[dict[str, Any]] = []
    members = [("subject", subject)] + [("spouse", s) for s in family.data["spouses"]] + [
        ("child", c) for c in family.data["children"]]
    for relation, m in members:
        record = person if relation == "subject" else family
        facts.append(_fact("relation", relation, m["idcs"], record))
        for key in ("sex", "birth_date", "alive", "death_date"):
            facts.append(_fact(key, m[key], m["idcs"], record))
    father = next((m for rel, m in members if rel in ("subject", "spouse") and m["sex"] == "M"), None)
    children = family.data["children"]
    under_21 = [c for c in children if c["alive"] and age_on(date.fromisoformat(c["birth_date"]), evidence.today) <= 20]
    verdict = {
        "members_alive": sum(1 for _, m in members if m["alive"]),
        "father_deceased": None if father is None else not father["alive"],
        "children": len(children),
        "children_under_21": len(under_21),
    }
    return {"status": "verified", "verdict": verdict, "facts": facts, "unverified": []}


def schooling(evidence: Evidence) -> Result:
    family = evidence.record("family", evidence.subject_idcs)
    if family is None:
        return _unavailable("civil_registry")
    facts: list[dict[str, Any]] = []
    children: list[dict[str, Any]] = []
    unverified: list[str] = []
    for child in family.data["children"]:
        if not child["alive"]:
            continue
        age = age_on(date.fromisoformat(child["birth_date"]), evidence.today)
        if not 6 <= age <= 20:
            children.append({"idcs": child["idcs"], "age": age, "school_age": False, "enrolled": None})
            continue
        answer = evidence.get("enrolment", child["idcs"])
        enrolled: bool | None
        if isinstance(answer, Record):
            enrolled = answer.data["status"] == "enrolled"
            for key in ("massar_code", "school_year", "status", "level", "school"):
                facts.append(_fact(key, answer.data[key], child["idcs"], answer))
        elif isinstance(answer, SourceNotFound):
            enrolled = False  # MASSAR has no record of this child: not in school
        else:
            enrolled = None
            unverified.append(child["idcs"])
        children.append({"idcs": child["idcs"], "age": age, "school_age": True, "enrolled": enrolled})
    school_age = [c for c in children if c["school_age"]]
    verdict = {
        "children": children,
        "children_6_20": len(school_age),
        "children_6_20_enrolled": sum(1 for c in school_age if c["enrolled"] is True),
        "children_6_20_not_enrolled": sum(1 for c in school_age if c["enrolled"] is False),
    }
    return {"status": "partial" if unverified else "verified", "verdict": verdict, "facts": facts,
            "unverified": unverified}


def health_coverage(evidence: Evidence) -> Result:
    idcs = evidence.subject_idcs
    answer = evidence.get("coverage", idcs)
    if answer is None or (isinstance(answer, ConnectorError) and not isinstance(answer, SourceNotFound)):
        return _unavailable("health")
    facts: list[dict[str, Any]] = []
    unverified: list[str] = []
    if isinstance(answer, Record):
        c = answer.data
        facts += [_fact(k, c[k], c["idcs"], answer) for k in ("scheme", "status", "since", "severe_disability")]
        scheme, active, since = c["scheme"], c["status"] == "active", c["since"]
        disabled = [c["idcs"]] if c["severe_disability"] else []
    else:
        scheme, active, since, disabled = "none", False, None, []
    family = evidence.record("family", idcs)
    if family is None:
        unverified.append("children (civil_registry)")
    else:
        for child in family.data["children"]:
            child_answer = evidence.get("coverage", child["idcs"])
            if isinstance(child_answer, Record):
                facts.append(_fact("severe_disability", child_answer.data["severe_disability"], child["idcs"],
                                   child_answer))
                if child_answer.data["severe_disability"]:
                    disabled.append(child["idcs"])
            elif isinstance(child_answer, ConnectorError) and not isinstance(child_answer, SourceNotFound):
                unverified.append(child["idcs"])
    verdict = {"scheme": scheme, "active": active, "since": since, "severe_disability": disabled,
               "amo_tadamon": scheme == "amo_tadamon" and active}
    return {"status": "partial" if unverified else "verified", "verdict": verdict, "facts": facts,
            "unverified": unverified}


def employment(evidence: Evidence) -> Result:
    idcs = evidence.subject_idcs
    first, last = last_complete_months(evidence.today, 6)
    family = evidence.record("family", idcs)
    people = [idcs] + ([s["idcs"] for s in family.data["spouses"] if s["alive"]] if family else [])
    facts: list[dict[str, Any]] = []
    persons: list[dict[str, Any]] = []
    unverified: list[str] = [] if family else ["spouses (civil_registry)"]
    for who in people:
        answer = evidence.get("declarations", who)
        if isinstance(answer, Record):
            months = answer.data["months"]
            declared = [m for m in months if m["days"] > 0]
            facts.append(_fact("employer", answer.data["employer"], str(who), answer))
            facts.append(_fact("declared_months", [m["month"] for m in declared], str(who), answer))
            facts.append(_fact("declared_days", sum(m["days"] for m in declared), str(who), answer))
            facts.append(_fact("declared_salary_mad", sum(m["salary_mad"] for m in declared), str(who), answer))
            persons.append({"idcs": who, "salaried_work_declared": bool(declared), "months_declared": len(declared)})
        elif isinstance(answer, SourceNotFound):
            persons.append({"idcs": who, "salaried_work_declared": False, "months_declared": 0})
        else:
            persons.append({"idcs": who, "salaried_work_declared": None, "months_declared": None})
            unverified.append(str(who))
    if not any(p["salaried_work_declared"] is not None for p in persons):
        return _unavailable("employment")
    declared = [p["salaried_work_declared"] for p in persons]
    verdict = {
        "period": {"from": first, "to": last},
        "persons": persons,
        # True as soon as one parent has declared work; unknown (None) if someone could not be checked
        "salaried_work_declared": True if True in declared else None if None in declared else False,
    }
    return {"status": "partial" if unverified else "verified", "verdict": verdict, "facts": facts,
            "unverified": unverified}


EVALUATORS: dict[str, Callable[[Evidence], Result]] = {
    "identity": identity,
    "household": household,
    "schooling": schooling,
    "health_coverage": health_coverage,
    "employment": employment,
}


def evaluate(checks: tuple[str, ...], evidence: Evidence) -> dict[str, Result]:
    if evidence.subject_idcs is None:  # the subject could not even be resolved
        return {c: _unavailable("civil_registry") for c in checks}
    return {c: EVALUATORS[c](evidence) for c in checks}
