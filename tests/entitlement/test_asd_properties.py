"""Properties of the pure ASD evaluator (gateway/entitlement/asd.py) under every rate table in force:
an eligible household never gets less than the floor; another child in school never lowers the amount;
the order in which the sources' answers arrive never changes the amount. Plus a few hand-worked cases."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.entitlement.asd import Child, HouseholdFacts, entitlement, load_rules
from gateway.entitlement.parameters import Snapshot

TREE = load_rules()
DATES = [date(2023, 12, 1), date(2025, 11, 1), date(2026, 1, 1), date(2026, 9, 1)]


def rules(on: date) -> Snapshot:
    snapshot = TREE.in_force(on)
    assert snapshot is not None
    return snapshot


@st.composite
def child(draw: st.DrawFn, on: date, index: int) -> Child:
    age_days = draw(st.integers(min_value=0, max_value=25 * 366))
    return Child(idcs=f"{1000000000 + index:010d}", birth_date=on - timedelta(days=age_days),
                 in_school=draw(st.booleans()), severe_disability=draw(st.booleans()))


@st.composite
def household(draw: st.DrawFn) -> tuple[HouseholdFacts, Snapshot]:
    on = draw(st.sampled_from(DATES))
    n = draw(st.integers(min_value=0, max_value=9))
    kids = tuple(draw(child(on, i)) for i in range(n))
    facts = HouseholdFacts(children=kids, father_deceased=draw(st.booleans()), head_alive=True, registered=True,
                           index=draw(st.floats(min_value=5.0, max_value=9.743001)), salaried_parent=False)
    return facts, rules(on)


@settings(max_examples=300, deadline=None)
@given(household())
def test_an_eligible_household_never_gets_less_than_the_floor(case: tuple[HouseholdFacts, Snapshot]) -> None:
    facts, snapshot = case
    outcome = entitlement(facts, snapshot)
    assert outcome.eligible is True
    assert outcome.monthly_amount_mad is not None
    assert outcome.monthly_amount_mad >= snapshot.integer("household.floor")
    assert outcome.monthly_amount_mad == sum(c.amount_mad for c in outcome.components)


@settings(max_examples=300, deadline=None)
@given(household(), st.integers(min_value=0, max_value=20), st.integers(min_value=0, max_value=365))
def test_another_child_in_school_never_lowers_the_amount(case: tuple[HouseholdFacts, Snapshot], age: int,
                                                       days: int) -> None:
    facts, snapshot = case
    before = entitlement(facts, snapshot).monthly_amount_mad
    born = snapshot.on - timedelta(days=age * 365 + min(days, 364 - age // 4))
    extra = Child("1999999999", born, in_school=True, severe_disability=False)
    after = entitlement(replace(facts, children=(*facts.children, extra)), snapshot).monthly_amount_mad
    assert before is not None and after is not None
    assert after >= before


@settings(max_examples=300, deadline=None)
@given(household(), st.randoms(use_true_random=False))
def test_the_order_of_the_answers_does_not_change_the_amount(case: tuple[HouseholdFacts, Snapshot],
                                                            shuffler: random.Random) -> None:
    facts, snapshot = case
    shuffled = list(facts.children)
    shuffler.shuffle(shuffled)
    first, second = entitlement(facts, snapshot), entitlement(replace(facts, children=tuple(shuffled)), snapshot)
    assert first.monthly_amount_mad == second.monthly_amount_mad
    assert sorted(first.components, key=repr) == sorted(second.components, key=repr)


def kid(idcs: int, born: date, in_school: bool | None = True, disabled: bool | None = False) -> Child:
    return Child(f"{idcs:010d}", born, in_school, disabled)


ELIGIBLE = HouseholdFacts((), father_deceased=False, head_alive=True, registered=True, index=9.0,
                          salaried_parent=False)


def test_a_first_birth_within_six_months_is_a_2000_grant() -> None:
    on = date(2026, 3, 1)
    outcome = entitlement(replace(ELIGIBLE, children=(kid(1, date(2025, 9, 15)),)), rules(on))
    assert [(g.birth_rank, g.amount_mad, g.claim_until) for g in outcome.birth_grants] == [(1, 2000, date(2026, 3, 15))]
    late = entitlement(replace(ELIGIBLE, children=(kid(1, date(2025, 8, 31)),)), rules(on))
    assert late.birth_grants == ()


def test_a_deceased_elder_child_counts_in_the_birth_rank() -> None:
    on = date(2026, 3, 1)
    facts = replace(ELIGIBLE, children=(kid(1, date(2026, 1, 10)),), other_births=(date(2020, 5, 1),))
    assert [(g.birth_rank, g.amount_mad) for g in entitlement(facts, rules(on)).birth_grants] == [(2, 1000)]


def test_unknown_facts_make_eligibility_open_and_a_known_refusal_stands() -> None:
    on = date(2026, 3, 1)
    unknown = entitlement(replace(ELIGIBLE, children=(kid(1, date(2015, 1, 1), in_school=None),)), rules(on))
    assert unknown.eligible is None and unknown.monthly_amount_mad is None
    assert unknown.missing == ("schooling.enrolled:0000000001",)
    refused = entitlement(replace(ELIGIBLE, registered=False, salaried_parent=None), rules(on))
    assert refused.eligible is False and refused.reasons == ("not_registered",)
    assert refused.missing == ("employment.salaried_work_declared",)


def test_the_index_threshold_is_inclusive() -> None:
    on = date(2026, 3, 1)
    assert entitlement(replace(ELIGIBLE, index=9.743001), rules(on)).eligible is True
    assert entitlement(replace(ELIGIBLE, index=9.7430011), rules(on)).reasons == ("index_above_threshold",)


def test_an_orphan_out_of_school_gets_the_out_of_school_rate() -> None:
    on = date(2026, 3, 1)
    facts = replace(ELIGIBLE, father_deceased=True, children=(kid(1, date(2012, 1, 1), in_school=False),
                                                              kid(2, date(2016, 1, 1))))
    outcome = entitlement(facts, rules(on))
    assert [(c.rule, c.amount_mad) for c in outcome.components] == [
        ("children.ranks_1_3.not_in_school", 200), ("children.ranks_1_3.father_deceased", 400)]
    assert outcome.monthly_amount_mad == 600
