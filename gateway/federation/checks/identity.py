"""``identity``: the subject is known to the civil registry, alive or not, and their age (at death for a
deceased person)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from types import MappingProxyType
from typing import Any

from gateway.federation.calendar import age_on
from gateway.federation.checks.protocol import Operation, Result, answered, fact, unavailable
from gateway.federation.evidence import Evidence

FIELDS = ("idcs", "cin", "first_name", "last_name", "first_name_ar", "last_name_ar", "sex", "birth_date",
          "alive", "death_date")


class Identity:
    name = "identity"
    facts = frozenset(FIELDS)
    labels = MappingProxyType({"fr": "Identité et état civil", "en": "Identity and civil status",
                               "ar": "الهوية والحالة المدنية"})
    operations = frozenset({"person"})

    def plan(self, known: Evidence) -> Iterator[Operation]:
        if known.subject_idcs:
            yield Operation("person", {"idcs": known.subject_idcs})

    def evaluate(self, evidence: Evidence) -> Result:
        person = evidence.record("person", evidence.subject_idcs)
        if person is None:
            return unavailable("civil_registry")
        p = person.data
        facts = [fact(k, p[k], p["idcs"], person) for k in FIELDS]
        # a deceased person's age is the age they died at, not the age they would have reached today
        on = date.fromisoformat(p["death_date"]) if not p["alive"] and p.get("death_date") else evidence.today
        verdict = {"known": True, "alive": p["alive"], "age": age_on(date.fromisoformat(p["birth_date"]), on)}
        return answered(verdict, facts, [])

    def summary(self, verdict: Mapping[str, Any]) -> str:
        return f"alive={verdict['alive']} age={verdict['age']}"


CHECK = Identity()
