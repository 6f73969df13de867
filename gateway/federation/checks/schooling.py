"""``schooling``: each living child of school age (6–20, ``rules.is_school_age``) enrolled this school
year or not. A child MASSAR does not know is not in school; one it could not answer for is unverified."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from connectors.base import Record, SourceNotFound
from gateway.federation.checks import rules
from gateway.federation.checks.protocol import Operation, Result, answered, fact, unavailable
from gateway.federation.evidence import Evidence

FIELDS = ("massar_code", "school_year", "status", "level", "school")


class Schooling:
    name = "schooling"
    facts = frozenset(FIELDS)
    labels = MappingProxyType({"fr": "Scolarité des enfants", "en": "Children's schooling", "ar": "تمدرس الأطفال"})
    operations = frozenset({"family", "enrolment"})

    def plan(self, known: Evidence) -> Iterator[Operation]:
        if not known.subject_idcs:
            return
        yield Operation("family", {"idcs": known.subject_idcs})
        family = known.record("family", known.subject_idcs)
        if family is not None:
            for child, age in rules.living_children(family.data, known.today):
                if rules.is_school_age(age):
                    yield Operation("enrolment", {"idcs": child["idcs"]})

    def evaluate(self, evidence: Evidence) -> Result:
        family = evidence.record("family", evidence.subject_idcs)
        if family is None:
            return unavailable("civil_registry")
        facts: list[dict[str, Any]] = []
        children: list[dict[str, Any]] = []
        unverified: list[str] = []
        for child, age in rules.living_children(family.data, evidence.today):
            if not rules.is_school_age(age):
                children.append({"idcs": child["idcs"], "age": age, "school_age": False, "enrolled": None})
                continue
            answer = evidence.get("enrolment", child["idcs"])
            enrolled: bool | None
            if isinstance(answer, Record):
                enrolled = answer.data["status"] == "enrolled"
                for key in FIELDS:
                    facts.append(fact(key, answer.data[key], child["idcs"], answer))
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
        return answered(verdict, facts, unverified)

    def summary(self, verdict: Mapping[str, Any]) -> str:
        return (f"children 6–20: {verdict['children_6_20']}, enrolled {verdict['children_6_20_enrolled']}, "
                f"not enrolled {verdict['children_6_20_not_enrolled']}")


CHECK = Schooling()
