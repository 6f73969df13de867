"""The ASD entitlement does not depend on the order in which the administrations' answers arrived: the same
evidence gathered in any order gives the same verdict (Hypothesis over the insertion order)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import SourceNotFound
from gateway.federation.checks import asd_entitlement
from gateway.federation.executor import Evidence
from tests.gateway.test_checks import FAMILY, SUBJECT, TODAY, rec

COVERAGE = {"scheme": "amo_tadamon", "status": "active", "since": "2023-01-01"}
ANSWERS = {
    ("person", "1000000001"): SUBJECT,
    ("family", "1000000001"): FAMILY,
    ("enrolment", "1000000003"): rec("enrolment", "education", idcs="1000000003", massar_code="M123456789",
                                     school_year="2026-2027", status="enrolled", level="1AC", school="X"),
    ("coverage", "1000000001"): rec("coverage", "health", idcs="1000000001", severe_disability=False, **COVERAGE),
    ("coverage", "1000000003"): rec("coverage", "health", idcs="1000000003", severe_disability=True, **COVERAGE),
    ("coverage", "1000000004"): rec("coverage", "health", idcs="1000000004", severe_disability=False, **COVERAGE),
    ("declarations", "1000000001"): SourceNotFound("employment"),
    ("social_registration", "1000000001"): rec(
        "social_registration", "social_registry", idcs="1000000001", household_id="RSU-000000001",
        registration_date="2023-01-01", last_update="2025-01-01", region="Souss-Massa",
        members=["1000000001", "1000000003", "1000000004"], socio_economic_index=9.1),
}


def verdict_of(order: list[tuple[str, str]]) -> dict[str, object]:
    evidence = Evidence(subject_idcs="1000000001", today=TODAY)
    for key in order:
        evidence.answers[key] = ANSWERS[key]
    result = asd_entitlement.CHECK.evaluate(evidence)
    assert result["status"] == "verified", result
    return dict(result["verdict"])


def test_the_hand_worked_amount() -> None:
    verdict = verdict_of(list(ANSWERS))
    # the father (a spouse) is deceased: two orphans at 400 (16 at school, 4), +100 for the disabled one
    assert verdict["eligible"] is True and verdict["monthly_amount_mad"] == 900
    assert verdict["reasons"] == [] and verdict["missing"] == []


@settings(max_examples=50, deadline=None)
@given(st.randoms(use_true_random=False))
def test_the_order_of_the_answers_does_not_change_the_verdict(shuffler: random.Random) -> None:
    order = list(ANSWERS)
    shuffler.shuffle(order)
    assert verdict_of(order) == verdict_of(list(ANSWERS))


def test_it_may_ask_what_the_checks_it_rests_on_ask() -> None:
    from gateway.federation.checks.registry import builtin

    registry = builtin()
    rests_on = set().union(*(registry.operations[name] for name in asd_entitlement.RESTS_ON))
    assert registry.operations["asd_entitlement"] == rests_on


def test_every_component_names_facts_and_a_legal_reference() -> None:
    for component in verdict_of(list(ANSWERS))["components"]:  # type: ignore[attr-defined]
        assert component["facts"] and all(f["source"] for f in component["facts"]), component
        assert "58-23" in component["legal_reference"]
