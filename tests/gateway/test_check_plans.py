"""The checks' plans and evaluations agree on the statute's bounds, and the executor runs exactly the plans.

The bounds are written here from the statute (school age 6–20, a child is under 21), independently of
``gateway/federation/checks/rules.py``: moving a bound there (in the planner or the evaluator) fails here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from connectors.base import Record
from gateway.federation.calendar import age_on
from gateway.federation.checks.registry import builtin
from gateway.federation.evidence import Evidence
from gateway.federation.plan import next_round
from simulators.population import FIXTURE_NAMES, Household, Population
from tests.gateway.conftest import Stack

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SUBJECT = "1000000001"
# living children aged 5, 6, 20 and 21 today; a dead 10-year-old
AGES = {"1000000005": 5, "1000000006": 6, "1000000020": 20, "1000000021": 21}


def _born(age: int) -> str:
    return date(TODAY.year - age, 3, 1).isoformat()  # birthday already passed this year


def _member(idcs: str, born: str, alive: bool = True) -> dict[str, Any]:
    return {"idcs": idcs, "first_name": "X", "last_name": "Y", "sex": "F", "birth_date": born, "alive": alive,
            "death_date": None if alive else "2025-01-01"}


def _family_evidence() -> Evidence:
    children = [_member(idcs, _born(age)) for idcs, age in AGES.items()]
    children.append(_member("1000000010", _born(10), alive=False))
    family = Record("civil_registry", "family", {"idcs": SUBJECT, "spouses": [], "children": children}, NOW)
    evidence = Evidence(subject_idcs=SUBJECT, today=TODAY)
    evidence.answers[("family", SUBJECT)] = family
    return evidence


def test_schooling_asks_and_counts_exactly_the_children_aged_6_to_20() -> None:
    schooling = builtin()["schooling"]
    evidence = _family_evidence()
    asked = {op.key for op in schooling.plan(evidence) if op.name == "enrolment"}
    assert asked == {"1000000006", "1000000020"}
    verdict = schooling.evaluate(evidence)["verdict"]
    assert {c["idcs"]: c["school_age"] for c in verdict["children"]} == {
        "1000000005": False, "1000000006": True, "1000000020": True, "1000000021": False}
    assert verdict["children_6_20"] == 2


def test_children_under_21_for_coverage_and_household() -> None:
    registry = builtin()
    evidence = _family_evidence()
    asked = {op.key for op in registry["health_coverage"].plan(evidence) if op.name == "coverage"}
    assert asked == {SUBJECT, "1000000005", "1000000006", "1000000020"}  # not the 21-year-old, not the dead
    evidence.answers[("person", SUBJECT)] = Record("civil_registry", "person", {
        **_member(SUBJECT, "1980-01-01"), "cin": None, "first_name_ar": "س", "last_name_ar": "ص"}, NOW)
    assert registry["household"].evaluate(evidence)["verdict"]["children_under_21"] == 3


def test_a_round_asks_each_operation_and_key_once() -> None:
    registry = builtin()
    evidence = _family_evidence()
    calls = next_round([registry[name] for name in registry.names], evidence)
    slots = [(op.name, op.key) for op in calls]
    assert len(slots) == len(set(slots))
    assert ("family", SUBJECT) not in slots, "what is answered is not asked again"
    assert ("person", SUBJECT) in slots and ("enrolment", "1000000006") in slots


# ------------------------------------------------------------------ the same bounds through the real stack


def _boundary_households(population: Population, today: date) -> list[Household]:
    """Households with a living child aged 5, 6, 20 and 21 today (each age in at least one of them)."""
    found: dict[int, Household] = {}
    for index in range(len(FIXTURE_NAMES), population.households):
        household = population.household(index)
        if not household.father.alive:
            continue
        ages = {age_on(c.birth_date, today) for c in household.children if c.alive}
        for age in ({5, 6, 20, 21} & ages) - found.keys():
            found[age] = household
        if len(found) == 4:
            break
    assert len(found) == 4, f"the test population has children of ages {sorted(found)} only"
    return list({h.index: h for h in found.values()}.values())


async def test_enrolment_is_asked_exactly_for_school_age_children(stack: Stack) -> None:
    today = datetime.now(UTC).date()  # the gateway's today
    for household in _boundary_households(stack.population, today):
        ages = {c.idcs: age_on(c.birth_date, today) for c in household.children if c.alive}
        school_age = {idcs for idcs, age in ages.items() if 6 <= age <= 20}
        answer = await stack.client.verify({"idcs": household.father.idcs}, "asd.eligibility",
                                           f"CASE-BOUNDS-{household.index}", ["schooling"])
        assert answer.status == 200
        document = answer.json()
        calls = {s["name"]: s["calls"] for s in document["sources"]}
        assert calls.get("education", 0) == len(school_age), (ages, calls)
        assert calls["civil_registry"] == 2, "the subject's record and family, once each"
        verdict = document["checks"]["schooling"]["verdict"]
        assert {c["idcs"] for c in verdict["children"] if c["school_age"]} == school_age
        assert all(c["enrolled"] is not None for c in verdict["children"] if c["school_age"])
        assert verdict["children_6_20"] == len(school_age)
