"""``asd_entitlement``: whether the subject's household is entitled to the Aide sociale directe on the
verification date, the indicative monthly amount line by line, the birth grants due, and why not.

It rests on other checks, taken from the check registry: ``identity``, ``household``, ``schooling``,
``health_coverage``, ``employment`` and ``social_registry`` — its plan is theirs, and it evaluates them to
gather its facts (each keeps its source). The computation is ``gateway/entitlement/asd.py`` over the rule
parameters in force on the verification date (``config/rules/asd/``); the words are ``asd_text.py``.
docs/asd.md gives each rule, its source and each assumed reading.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.entitlement import rules
from gateway.entitlement.asd import Child, HouseholdFacts, entitlement
from gateway.federation.calendar import age_on
from gateway.federation.checks import asd_text
from gateway.federation.checks.protocol import WITHHELD, Check, Operation, Result, answered
from gateway.federation.evidence import Evidence

RESTS_ON = ("identity", "household", "schooling", "health_coverage", "employment", "social_registry")
# The facts of the checks it rests on that it repeats (field masks: ``asd_entitlement.<fact>``)
FACTS = frozenset({"alive", "death_date", "sex", "birth_date", "relation", "status", "school_year",
                   "severe_disability", "declared_months", "household_id", "registration_date",
                   "socio_economic_index"})
Facts = dict[tuple[str, str], dict[str, Any]]


def _registry_checks() -> tuple[Check, ...]:
    from gateway.federation.checks.registry import builtin  # the registry imports this module

    registry = builtin()
    return tuple(registry[name] for name in RESTS_ON)


class AsdEntitlement:
    name = "asd_entitlement"
    facts = FACTS
    labels = MappingProxyType({"fr": "Droit à l'aide sociale directe (ASD) et montant indicatif",
                               "en": "Direct social support (ASD) entitlement and indicative amount",
                               "ar": "الحق في الدعم الاجتماعي المباشر والمبلغ التقريبي"})
    operations = frozenset({"person", "family", "enrolment", "coverage", "declarations", "social_registration"})
    verdict_schema = asd_text.VERDICT_SCHEMA

    def prepare(self, config_dir: Path) -> None:
        """At start-up: the ASD parameter tree loads (a mistake is one line naming file and key)."""
        rules.prepare(config_dir)

    def plan(self, known: Evidence) -> Iterator[Operation]:
        for check in _registry_checks():
            yield from check.plan(known)

    def evaluate(self, evidence: Evidence) -> Result:
        from gateway.federation.checks.registry import CheckRegistry

        results = {c.name: CheckRegistry.result_of(c, evidence) for c in _registry_checks()}
        known: Facts = {}
        for result in results.values():
            for f in result["facts"]:
                known.setdefault((f["name"], f["about"]), f)
        snapshot = rules.asd().in_force(evidence.today)
        if snapshot is None:
            verdict = asd_text.no_rates(evidence.today, evidence.language)
            return answered(verdict, [], ["rates_in_force"])
        if _a_child_of_the_household(evidence, snapshot.integer("children.age_max")):
            verdict = asd_text.a_child_asked(evidence.today, snapshot.effective_from, evidence.language)
            return answered(verdict, [], ["head_of_household"])
        household = household_facts(evidence, results)
        outcome = entitlement(household, snapshot)
        cited: list[dict[str, Any]] = []
        components = []
        for c in outcome.components:
            facts = _cite(known, c.basis, c.member, results)
            cited += facts
            components.append({"rule": c.rule, "member": c.member, "rank": c.rank, "amount_mad": c.amount_mad,
                               "facts": facts, "legal_reference": c.reference})
        cited += _eligibility_facts(known, evidence, results)
        verdict = {
            "eligible": outcome.eligible,
            "missing": list(outcome.missing),
            "monthly_amount_mad": outcome.monthly_amount_mad,
            "rates_effective_from": outcome.rates_effective_from.isoformat(),
            "as_of": evidence.today.isoformat(),
            "components": components,
            "reasons": list(outcome.reasons),
            "birth_grants": [{"member": g.member, "born_on": g.born_on.isoformat(), "birth_rank": g.birth_rank,
                              "amount_mad": g.amount_mad, "claim_until": g.claim_until.isoformat(),
                              "rule": g.rule, "legal_reference": g.reference} for g in outcome.birth_grants],
            "language": asd_text.language(evidence.language),
            "explanation": asd_text.explain(outcome, results, evidence.language),
        }
        unique = list({(f["name"], f["about"]): f for f in cited if f["name"] in FACTS}.values())
        return answered(verdict, unique, list(outcome.missing))

    def withhold(self, verdict: dict[str, Any], hidden: Sequence[Mapping[str, Any]]) -> None:
        """A member's withheld birth date leaves their birth grant: its ``born_on`` and the ``claim_until`` reckoned
        from it become null and leave the explanation (``apply_masks`` takes the other values out)."""
        born_hidden = {f["about"] for f in hidden if f["name"] == "birth_date"}
        dates = set()
        for grant in verdict.get("birth_grants") or ():
            if grant.get("member") in born_hidden:
                dates |= {grant["born_on"], grant["claim_until"]} - {None}
                grant["born_on"] = grant["claim_until"] = None
        if dates:
            verdict["explanation"] = [_without(line, dates) for line in verdict.get("explanation") or ()]

    def summary(self, verdict: Mapping[str, Any]) -> str:
        if verdict["eligible"] is None:
            return f"eligible: unknown (missing {', '.join(verdict['missing'])})"
        if not verdict["eligible"]:
            return f"not eligible: {', '.join(verdict['reasons'])}"
        return f"eligible: {verdict['monthly_amount_mad']} MAD a month (rates of {verdict['rates_effective_from']})"


def _without(line: str, dates: set[str]) -> str:
    for text in dates:
        line = line.replace(text, WITHHELD)
    return line


def _a_child_of_the_household(evidence: Evidence, age_max: int) -> bool:
    """The subject is a child of a household, not its head: 0 to ``age_max``, with a parent in the civil registry,
    and no spouse or child of their own. Their household's entitlement is asked through a parent (the family
    record of a child lists no children, which would read as a household without a child)."""
    person = evidence.record("person", evidence.subject_idcs)
    family = evidence.record("family", evidence.subject_idcs)
    if person is None or family is None:
        return False
    p = person.data
    young = age_on(date.fromisoformat(str(p["birth_date"])), evidence.today) <= age_max
    return young and bool(p.get("father_idcs") or p.get("mother_idcs")) and not family.data["spouses"] \
        and not family.data["children"]


def _alive_on(member: Mapping[str, Any], on: date) -> bool:
    """Alive on the verification date (a death after it did not yet count)."""
    death = member.get("death_date")
    return bool(member["alive"] or (death is not None and date.fromisoformat(str(death)) > on))


def household_facts(evidence: Evidence, results: Mapping[str, Result]) -> HouseholdFacts:
    """What the entitlement rests on, from the checks' results and the civil records they read."""
    on, idcs = evidence.today, evidence.subject_idcs
    person = evidence.record("person", idcs) if results["identity"]["verdict"] else None
    family = evidence.record("family", idcs) if results["household"]["verdict"] else None
    head_alive = None if person is None else _alive_on(person.data, on)
    children: list[Child] = []
    other_births: list[date] = []
    father_deceased: bool | None = None
    if family is not None and person is not None:
        parents = [person.data, *family.data["spouses"]]
        father = next((m for m in parents if m["sex"] == "M"), None)
        father_deceased = False if father is None else not _alive_on(father, on)  # no father recorded: no rate
        enrolled = _enrolled(results["schooling"])
        disabled = _disabled(results["health_coverage"])
        for child in family.data["children"]:
            born = date.fromisoformat(str(child["birth_date"]))
            if not _alive_on(child, on):
                other_births.append(born)
                continue
            children.append(Child(child["idcs"], born, enrolled.get(child["idcs"]), disabled(child["idcs"])))
    employment = results["employment"]["verdict"]
    registry = results["social_registry"]["verdict"]
    return HouseholdFacts(
        children=tuple(children),
        father_deceased=father_deceased,
        head_alive=head_alive,
        registered=None if registry is None else registry["registered"],
        index=None if registry is None else registry["socio_economic_index"],
        salaried_parent=None if employment is None else employment["salaried_work_declared"],
        other_births=tuple(other_births),
        family_known=family is not None,
    )


def _enrolled(schooling: Result) -> dict[str, bool | None]:
    verdict = schooling["verdict"]
    if verdict is None:
        return {}
    return {c["idcs"]: c["enrolled"] for c in verdict["children"] if c["school_age"]}


def _disabled(coverage: Result) -> Any:
    verdict = coverage["verdict"]
    unverified = set(coverage["unverified"])

    def severe(idcs: str) -> bool | None:
        if verdict is None or idcs in unverified:
            return None
        return idcs in verdict["severe_disability"]
    return severe


_BASIS_FACTS = {"birth_date": ("birth_date",), "in_school": ("status", "school_year"),
                "severe_disability": ("severe_disability",)}


def _cite(known: Facts, basis: tuple[str, ...], member: str | None,
          results: Mapping[str, Result]) -> list[dict[str, Any]]:
    """The facts (with their sources) a component rests on."""
    out: list[dict[str, Any]] = []
    for key in basis:
        if key == "father_deceased":
            out += [f for (name, _), f in known.items() if name in ("alive", "death_date") and
                    _is_parent(known, f["about"]) and _is_male(known, f["about"])]
        elif member is not None:
            out += [known[(name, member)] for name in _BASIS_FACTS.get(key, ()) if (name, member) in known]
        elif key == "birth_date":  # the flat amount: the children's birth dates show none is under 21
            out += [f for (name, about), f in known.items() if name == "birth_date" and _is_child(known, about)]
    return out


def _relation(known: Facts, about: str) -> Any:
    fact = known.get(("relation", about))
    return fact["value"] if fact else None


def _is_parent(known: Facts, about: str) -> bool:
    return bool(_relation(known, about) in ("subject", "spouse"))


def _is_child(known: Facts, about: str) -> bool:
    return bool(_relation(known, about) == "child")


def _is_male(known: Facts, about: str) -> bool:
    fact = known.get(("sex", about))
    return bool(fact and fact["value"] == "M")


def _eligibility_facts(known: Facts, evidence: Evidence, results: Mapping[str, Result]) -> list[dict[str, Any]]:
    idcs = str(evidence.subject_idcs)
    wanted = [("alive", idcs), ("death_date", idcs), ("household_id", idcs), ("registration_date", idcs),
              ("socio_economic_index", idcs)]
    out = [known[k] for k in wanted if k in known]
    out += [f for (name, _), f in known.items() if name == "declared_months"]
    return out


CHECK = AsdEntitlement()
