"""``health_coverage``: the subject's AMO scheme (Tadamon / contributory / none) and status, and which of
the subject and the living children under 21 (``rules.is_child``) have a severe disability recorded."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from connectors.base import ConnectorError, Record, SourceNotFound
from gateway.federation.checks import rules
from gateway.federation.checks.protocol import Operation, Result, answered, fact, unavailable
from gateway.federation.evidence import Evidence

FIELDS = ("scheme", "status", "since", "severe_disability")


class HealthCoverage:
    name = "health_coverage"
    facts = frozenset(FIELDS)
    labels = MappingProxyType({"fr": "Couverture médicale", "en": "Health coverage", "ar": "التغطية الصحية"})
    operations = frozenset({"family", "coverage"})

    def plan(self, known: Evidence) -> Iterator[Operation]:
        if not known.subject_idcs:
            return
        yield Operation("family", {"idcs": known.subject_idcs})
        yield Operation("coverage", {"idcs": known.subject_idcs})
        family = known.record("family", known.subject_idcs)
        if family is not None:
            for child, age in rules.living_children(family.data, known.today):
                if rules.is_child(age):
                    yield Operation("coverage", {"idcs": child["idcs"]})

    def evaluate(self, evidence: Evidence) -> Result:
        idcs = evidence.subject_idcs
        answer = evidence.get("coverage", idcs)
        if answer is None or (isinstance(answer, ConnectorError) and not isinstance(answer, SourceNotFound)):
            return unavailable("health")
        facts: list[dict[str, Any]] = []
        unverified: list[str] = []
        if isinstance(answer, Record):
            c = answer.data
            facts += [fact(k, c[k], c["idcs"], answer) for k in FIELDS]
            scheme, active, since = c["scheme"], c["status"] == "active", c["since"]
            disabled = [c["idcs"]] if c["severe_disability"] else []
        else:
            scheme, active, since, disabled = "none", False, None, []
        family = evidence.record("family", idcs)
        if family is None:
            unverified.append("children (civil_registry)")
        else:
            for child, age in rules.living_children(family.data, evidence.today):
                if not rules.is_child(age):
                    continue
                child_answer = evidence.get("coverage", child["idcs"])
                if isinstance(child_answer, Record):
                    severe = child_answer.data["severe_disability"]
                    facts.append(fact("severe_disability", severe, child["idcs"], child_answer))
                    if severe:
                        disabled.append(child["idcs"])
                elif isinstance(child_answer, ConnectorError) and not isinstance(child_answer, SourceNotFound):
                    unverified.append(child["idcs"])
        verdict = {"scheme": scheme, "active": active, "since": since, "severe_disability": disabled,
                   "amo_tadamon": scheme == "amo_tadamon" and active}
        return answered(verdict, facts, unverified)

    def summary(self, verdict: Mapping[str, Any]) -> str:
        return (f"scheme={verdict['scheme']} active={verdict['active']} "
                f"severe_disability={len(verdict['severe_disability'])}")


CHECK = HealthCoverage()
