"""``employment``: salaried work declared to the CNSS in the declaration window (``rules``: the last six
complete months), for the subject and each living spouse."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from connectors.base import Record, SourceNotFound
from gateway.federation.checks import rules
from gateway.federation.checks.protocol import Operation, Result, answered, fact, unavailable
from gateway.federation.evidence import Evidence


class Employment:
    name = "employment"
    facts = frozenset({"employer", "declared_months", "declared_days", "declared_salary_mad"})
    labels = MappingProxyType({"fr": "Emploi et déclarations de salaire", "en": "Employment and declared wages",
                               "ar": "الشغل والأجور المصرح بها"})
    operations = frozenset({"family", "declarations"})

    def plan(self, known: Evidence) -> Iterator[Operation]:
        idcs = known.subject_idcs
        if not idcs:
            return
        first, last = rules.declaration_window(known.today)
        yield Operation("family", {"idcs": idcs})
        yield Operation("declarations", {"idcs": idcs, "from": first, "to": last})
        family = known.record("family", idcs)
        if family is not None:
            for spouse in family.data["spouses"]:
                if spouse["alive"]:
                    yield Operation("declarations", {"idcs": spouse["idcs"], "from": first, "to": last})

    def evaluate(self, evidence: Evidence) -> Result:
        idcs = evidence.subject_idcs
        first, last = rules.declaration_window(evidence.today)
        family = evidence.record("family", idcs)
        people = [idcs] + ([s["idcs"] for s in family.data["spouses"] if s["alive"]] if family else [])
        facts: list[dict[str, Any]] = []
        persons: list[dict[str, Any]] = []
        unverified: list[str] = [] if family else ["spouses (civil_registry)"]
        for who in people:
            answer = evidence.get("declarations", who)
            if isinstance(answer, Record):
                declared = [m for m in answer.data["months"] if m["days"] > 0]
                facts.append(fact("employer", answer.data["employer"], str(who), answer))
                facts.append(fact("declared_months", [m["month"] for m in declared], str(who), answer))
                facts.append(fact("declared_days", sum(m["days"] for m in declared), str(who), answer))
                facts.append(fact("declared_salary_mad", sum(m["salary_mad"] for m in declared), str(who), answer))
                persons.append({"idcs": who, "salaried_work_declared": bool(declared),
                                "months_declared": len(declared)})
            elif isinstance(answer, SourceNotFound):
                persons.append({"idcs": who, "salaried_work_declared": False, "months_declared": 0})
            else:
                persons.append({"idcs": who, "salaried_work_declared": None, "months_declared": None})
                unverified.append(str(who))
        if not any(p["salaried_work_declared"] is not None for p in persons):
            return unavailable("employment")
        flags = [p["salaried_work_declared"] for p in persons]
        verdict = {
            "period": {"from": first, "to": last},
            "persons": persons,
            # True as soon as one parent has declared work; unknown (None) if someone could not be checked
            "salaried_work_declared": True if True in flags else None if None in flags else False,
        }
        return answered(verdict, facts, unverified)

    def summary(self, verdict: Mapping[str, Any]) -> str:
        return (f"salaried work declared {verdict['period']['from']}..{verdict['period']['to']}: "
                f"{verdict['salaried_work_declared']}")


CHECK = Employment()
