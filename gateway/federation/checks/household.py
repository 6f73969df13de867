"""``household``: the subject, spouses and children as the civil registry records them; whether the father
is deceased; how many living children are under 21."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from gateway.federation.checks import rules
from gateway.federation.checks.protocol import Operation, Result, answered, fact, unavailable
from gateway.federation.evidence import Evidence

FIELDS = ("sex", "birth_date", "alive", "death_date")


class Household:
    name = "household"
    facts = frozenset({"relation", *FIELDS})
    labels = MappingProxyType({"fr": "Composition du ménage", "en": "Household composition", "ar": "تركيبة الأسرة"})
    operations = frozenset({"person", "family"})

    def plan(self, known: Evidence) -> Iterator[Operation]:
        if known.subject_idcs:
            yield Operation("person", {"idcs": known.subject_idcs})
            yield Operation("family", {"idcs": known.subject_idcs})

    def evaluate(self, evidence: Evidence) -> Result:
        person = evidence.record("person", evidence.subject_idcs)
        family = evidence.record("family", evidence.subject_idcs)
        if person is None or family is None:
            return unavailable("civil_registry")
        facts: list[dict[str, Any]] = []
        members = [("subject", person.data)] + [("spouse", s) for s in family.data["spouses"]] + [
            ("child", c) for c in family.data["children"]]
        for relation, m in members:
            record = person if relation == "subject" else family
            facts.append(fact("relation", relation, m["idcs"], record))
            for key in FIELDS:
                facts.append(fact(key, m[key], m["idcs"], record))
        father = next((m for rel, m in members if rel in ("subject", "spouse") and m["sex"] == "M"), None)
        children = family.data["children"]
        under_21 = [c for c, age in rules.living_children(family.data, evidence.today) if rules.is_child(age)]
        verdict = {
            "members_alive": sum(1 for _, m in members if m["alive"]),
            "father_deceased": None if father is None else not father["alive"],
            "children": len(children),
            "children_under_21": len(under_21),
        }
        return answered(verdict, facts, [])

    def summary(self, verdict: Mapping[str, Any]) -> str:
        return (f"father_deceased={verdict['father_deceased']} children_under_21={verdict['children_under_21']} "
                f"members_alive={verdict['members_alive']}")


CHECK = Household()
