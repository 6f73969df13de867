"""The synthetic population: determinism, identifiers, cross-checks, fixtures, statistics."""

from __future__ import annotations

import random
import re
import statistics
import tracemalloc
from collections.abc import Iterator
from datetime import date

import pytest

from simulators.names import FEMALE_FIRST, LAST, MALE_FIRST, REGIONS
from simulators.population import (
    FIXTURE_NAMES,
    FIXTURES,
    REFERENCE_DATE,
    SLOTS,
    Household,
    Person,
    Population,
    is_valid_idcs,
    luhn_digit,
)

SEED = "anss-dev"
TODAY = date(2026, 11, 23)
SMALL = 10_000
LARGE = 3_200_000
MAX_HOUSEHOLDS = 42_249_999  # the CIN space (676 M values / 16 slots) bounds the population

IDCS_RE = re.compile(r"^[0-9]{10}$")
CIN_RE = re.compile(r"^[A-Z]{2}[0-9]{6}$")
MASSAR_RE = re.compile(r"^[A-Z][0-9]{9}$")


@pytest.fixture(scope="module")
def pop() -> Population:
    return Population(SEED, SMALL, today=TODAY)


@pytest.fixture(scope="module")
def large() -> Population:
    return Population(SEED, LARGE, today=TODAY)


@pytest.fixture(scope="module")
def sample_5000(pop: Population) -> list[Household]:
    return list(pop.iter_households(5_000))


def luhn_ok(number: str) -> bool:
    """Independent Luhn check (every second digit from the right doubled), not using the code under test."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def sample_indexes(population: Population) -> list[int]:
    n = population.households
    return sorted({0, 1, len(FIXTURES), 17, 999, n // 2, n - 2, n - 1})


def members(population: Population, indexes: list[int]) -> Iterator[Person]:
    for i in indexes:
        yield from population.household(i).members


def flip_check_digit(idcs: str) -> str:
    return idcs[:9] + str((int(idcs[9]) + 1) % 10)


def assert_unknown_everywhere(population: Population, idcs: str) -> None:
    assert population.household_of(idcs) is None
    assert population.person(idcs) is None
    assert population.family(idcs) is None
    assert population.enrolment(idcs) is None
    assert population.coverage(idcs) is None
    assert population.employment(idcs, "2020-01", "2026-10") is None


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_households() -> None:
    a = Population(SEED, SMALL, today=TODAY)
    b = Population(SEED, SMALL, today=TODAY)
    for i in [*range(len(FIXTURES)), 5, 123, 4_567, SMALL - 1]:
        assert a.household(i) == b.household(i)
        assert a.household(i) is not b.household(i)  # regenerated, not shared
    assert a.unknown_idcs() == b.unknown_idcs()


def test_identities_do_not_depend_on_population_size(pop: Population, large: Population) -> None:
    for i in [0, 3, 42, 9_999]:
        assert pop.household(i) == large.household(i)


def test_iter_households_matches_household(pop: Population) -> None:
    for h in pop.iter_households(50):
        assert h == pop.household(h.index)


def test_different_seed_gives_different_identifiers() -> None:
    a = Population(SEED, SMALL, today=TODAY)
    b = Population("another-seed", SMALL, today=TODAY)
    ids_a = [p.idcs for p in members(a, list(range(20)))]
    ids_b = [p.idcs for p in members(b, list(range(20)))]
    assert ids_a != ids_b
    assert len(set(ids_a) & set(ids_b)) <= 1  # a chance collision of one 10-digit number at most
    cins_a = {p.cin for p in members(a, list(range(20))) if p.cin}
    cins_b = {p.cin for p in members(b, list(range(20))) if p.cin}
    assert cins_a != cins_b


def test_population_bounds() -> None:
    with pytest.raises(ValueError):
        Population(SEED, 0)
    with pytest.raises(ValueError):
        Population(SEED, len(FIXTURES) - 1)
    with pytest.raises(ValueError):
        Population(SEED, MAX_HOUSEHOLDS + 1)
    p = Population(SEED, len(FIXTURES))
    with pytest.raises(IndexError):
        p.household(len(FIXTURES))
    with pytest.raises(IndexError):
        p.household(-1)


# ---------------------------------------------------------------- IDCS


def test_luhn_helpers_agree_with_an_independent_implementation() -> None:
    rng = random.Random(1)
    for _ in range(500):
        payload = f"{rng.randrange(10**9):09d}"
        digit = luhn_digit(payload)
        assert luhn_ok(payload + str(digit))
        assert is_valid_idcs(payload + str(digit))
        for wrong in range(10):
            if wrong != digit:
                assert not is_valid_idcs(payload + str(wrong))
                assert not luhn_ok(payload + str(wrong))


@pytest.mark.parametrize("bad", ["", "123456789", "12345678903", "12345678a0", " 123456782", "١٢٣٤٥٦٧٨٩٠"])
def test_is_valid_idcs_rejects_malformed(bad: str) -> None:
    assert not is_valid_idcs(bad)


@pytest.mark.parametrize("fixture_name", ["pop", "large"])
def test_idcs_format_and_round_trip(fixture_name: str, request: pytest.FixtureRequest) -> None:
    population: Population = request.getfixturevalue(fixture_name)
    seen: set[str] = set()
    for i in sample_indexes(population):
        household = population.household(i)
        assert household.index == i
        for slot, person in enumerate(household.members):
            assert IDCS_RE.match(person.idcs), person.idcs
            assert luhn_ok(person.idcs) and is_valid_idcs(person.idcs)
            assert person.idcs == population.idcs_of(i, slot)
            assert (person.household_index, person.slot) == (i, slot)
            assert population.person(person.idcs) == person
            located = population.household_of(person.idcs)
            assert located is not None and located.index == i
            assert person.idcs not in seen
            seen.add(person.idcs)


def test_idcs_of_is_injective_over_slots(pop: Population) -> None:
    ids = {pop.idcs_of(i, s) for i in range(200) for s in range(SLOTS)}
    assert len(ids) == 200 * SLOTS


# ---------------------------------------------------------------- CIN


def test_cin_for_adults_only_and_round_trip(pop: Population, large: Population) -> None:
    for population in (pop, large):
        for person in members(population, sample_indexes(population)):
            adult = age_on(person.birth_date, REFERENCE_DATE) >= 18
            if adult:
                assert person.cin is not None and CIN_RE.match(person.cin), person.cin
                assert person.cin == population.cin_of(person.household_index, person.slot)
                assert population.person_by_cin(person.cin) == person
                assert population.person_by_cin(person.cin.lower()) == person
            else:
                assert person.cin is None


def test_cin_of_children_is_unknown(pop: Population) -> None:
    child = pop.fixture("deceased_father").children[0]
    assert child.cin is None
    # the CIN a child would get if it were an adult does not resolve to anyone
    assert pop.person_by_cin(pop.cin_of(child.household_index, child.slot)) is None


@pytest.mark.parametrize("bad", ["", "A1234567", "AB12345", "AB1234567", "1B123456", "AB12345X", "ÀB123456"])
def test_person_by_cin_rejects_malformed(pop: Population, bad: str) -> None:
    assert pop.person_by_cin(bad) is None


def test_cin_of_a_household_outside_the_population_is_unknown(pop: Population) -> None:
    assert pop.person_by_cin(pop.cin_of(pop.households, 0)) is None
    assert pop.person_by_cin(pop.cin_of(pop.households + 12_345, 1)) is None


# ---------------------------------------------------------------- unknown identifiers


def test_unknown_idcs_is_well_formed_and_unknown_everywhere(pop: Population, large: Population) -> None:
    for population in (pop, large):
        unknown = population.unknown_idcs()
        assert IDCS_RE.match(unknown) and is_valid_idcs(unknown) and luhn_ok(unknown)
        assert_unknown_everywhere(population, unknown)


def test_flipped_check_digit_is_unknown_everywhere(pop: Population) -> None:
    for person in members(pop, [0, 2, 777]):
        wrong = flip_check_digit(person.idcs)
        assert IDCS_RE.match(wrong) and not is_valid_idcs(wrong)
        assert_unknown_everywhere(pop, wrong)


def test_unused_slot_of_an_existing_household_is_unknown(pop: Population) -> None:
    household = pop.household(0)
    idcs = pop.idcs_of(0, len(household.members))
    assert is_valid_idcs(idcs)
    assert_unknown_everywhere(pop, idcs)


def test_random_valid_idcs_outside_a_small_population_is_unknown() -> None:
    small = Population(SEED, 1_000, today=TODAY)
    inside = {small.idcs_of(i, s) for i in range(small.households) for s in range(SLOTS)}
    rng = random.Random(20261123)
    found = 0
    while found < 25:
        payload = f"{rng.randrange(10**9):09d}"
        idcs = payload + str(luhn_digit(payload))
        if idcs in inside:
            continue
        found += 1
        assert is_valid_idcs(idcs)
        assert_unknown_everywhere(small, idcs)


def test_identifier_beyond_the_population_is_unknown(pop: Population, large: Population) -> None:
    known_in_large = large.idcs_of(SMALL + 5, 0)
    assert large.person(known_in_large) is not None
    assert_unknown_everywhere(pop, known_in_large)


# ---------------------------------------------------------------- consistency across administrations


def test_children_point_to_their_parents(pop: Population) -> None:
    for household in pop.iter_households(300):
        father, mother = household.father, household.mother
        assert (father.slot, father.sex, mother.slot, mother.sex) == (0, "M", 1, "F")
        assert father.father_idcs is None and mother.mother_idcs is None
        for child in household.children:
            dad, mum = pop.person(child.father_idcs or ""), pop.person(child.mother_idcs or "")
            assert dad is not None and mum is not None
            assert dad == father and mum == mother
            assert dad.household_index == mum.household_index == child.household_index == household.index
            assert child.last_name == father.last_name
            assert child.region == household.region


def test_family_of_parents_and_children(pop: Population) -> None:
    household = pop.fixture("deceased_father")
    assert pop.family(household.father.idcs) == ((household.mother,), household.children)
    assert pop.family(household.mother.idcs) == ((household.father,), household.children)
    assert len(household.children) == 3
    for child in household.children:
        assert pop.family(child.idcs) == ((), ())


def test_deceased_father(pop: Population) -> None:
    household = pop.fixture("deceased_father")
    father = household.father
    assert father.death_date is not None and not father.alive
    assert father.death_date < TODAY
    assert household.size == len(household.members) - 1
    coverage = pop.coverage(father.idcs)
    assert coverage is not None and coverage.status == "inactive"
    employment = pop.employment(father.idcs, "2020-01", "2026-10")
    death_month = f"{father.death_date:%Y-%m}"
    assert employment is None or all(d.month <= death_month for d in employment.declarations)
    # the survivors stay covered
    for person in household.members[1:]:
        cov = pop.coverage(person.idcs)
        assert cov is not None and cov.status == "active" and cov.scheme == "amo_tadamon"


def test_no_declarations_after_death(pop: Population) -> None:
    checked = 0
    for household in pop.iter_households(5_000):
        father = household.father
        job = dict(household.jobs).get(father.idcs)
        if father.death_date is None or job is None or job.start > father.death_date:
            continue
        # employment() reads at most 120 months, so ask for the two years around the death
        first = max(job.start, father.death_date.replace(day=1, year=father.death_date.year - 1))
        employment = pop.employment(father.idcs, f"{first:%Y-%m}", f"{father.death_date.year + 1}-12")
        assert employment is not None
        months = [d.month for d in employment.declarations]
        assert months, "declared from the job start until death"
        assert min(months) == f"{first:%Y-%m}"
        assert max(months) == f"{father.death_date:%Y-%m}"
        assert pop.coverage(father.idcs).status == "inactive"  # type: ignore[union-attr]
        checked += 1
    assert checked >= 3


# ---------------------------------------------------------------- education


def test_child_out_of_school(pop: Population) -> None:
    household = pop.fixture("child_out_of_school")
    teen, young = household.children
    assert age_on(teen.birth_date, REFERENCE_DATE) == 15
    assert age_on(young.birth_date, REFERENCE_DATE) == 8
    teen_enrolment, young_enrolment = pop.enrolment(teen.idcs), pop.enrolment(young.idcs)
    assert teen_enrolment is not None and teen_enrolment.status == "not_enrolled"
    assert young_enrolment is not None and young_enrolment.status == "enrolled"
    assert young_enrolment.school_year == "2026-2027"
    assert young_enrolment.level == "3AP"
    assert young_enrolment.school.startswith("École primaire ")
    assert pop.enrolment(household.father.idcs) is None
    assert pop.enrolment(household.mother.idcs) is None


def test_children_under_six_have_no_enrolment(pop: Population) -> None:
    assert age_on(pop.fixture("deceased_father").children[2].birth_date, REFERENCE_DATE) == 3
    assert pop.enrolment(pop.fixture("deceased_father").children[2].idcs) is None
    assert pop.enrolment(pop.fixture("amo_tadamon").children[3].idcs) is None
    young = 0
    for household in pop.iter_households(500):
        for child in household.children:
            if age_on(child.birth_date, REFERENCE_DATE) < 6:
                young += 1
                assert pop.enrolment(child.idcs) is None
    assert young > 0


def test_massar_code_format_and_stability(pop: Population) -> None:
    letters = {name: letter for name, _, _, letter in REGIONS}
    codes = 0
    for household in pop.iter_households(300):
        for child in household.children:
            enrolment = pop.enrolment(child.idcs)
            if enrolment is None:
                continue
            codes += 1
            assert MASSAR_RE.match(enrolment.massar_code), enrolment.massar_code
            assert enrolment.massar_code[0] == letters[household.region]
            assert enrolment.region == household.region
            assert enrolment.idcs == child.idcs
            assert enrolment.status in {"enrolled", "not_enrolled"}
            other_year = pop.enrolment(child.idcs, "2025-2026")
            assert other_year is not None and other_year.massar_code == enrolment.massar_code
    assert codes > 100


# ---------------------------------------------------------------- health coverage


def test_coverage_amo_tadamon(pop: Population) -> None:
    household = pop.fixture("amo_tadamon")
    assert len(household.children) == 4
    for person in household.members:
        coverage = pop.coverage(person.idcs)
        assert coverage is not None
        assert coverage.scheme == "amo_tadamon" and coverage.status == "active"
        assert coverage.since == date(2023, 1, 1)
    assert pop.employment(household.father.idcs, "2023-01", "2026-10") is None
    assert pop.employment(household.mother.idcs, "2023-01", "2026-10") is None


def test_coverage_salaried_parent(pop: Population) -> None:
    household = pop.fixture("salaried_parent")
    for person in household.members:
        coverage = pop.coverage(person.idcs)
        assert coverage is not None
        assert coverage.scheme == "amo_contributory" and coverage.status == "active"
        assert coverage.since == date(2021, 4, 1)


def test_coverage_disabled_child(pop: Population) -> None:
    household = pop.fixture("disabled_child")
    (child,) = household.children
    assert child.severe_disability
    coverage = pop.coverage(child.idcs)
    assert coverage is not None and coverage.severe_disability and coverage.status == "active"
    for parent in (household.father, household.mother):
        parent_coverage = pop.coverage(parent.idcs)
        assert parent_coverage is not None and not parent_coverage.severe_disability
    enrolment = pop.enrolment(child.idcs)
    assert enrolment is not None and enrolment.status == "enrolled"


def test_fixtures_are_the_first_households(pop: Population) -> None:
    assert FIXTURE_NAMES == ("deceased_father", "child_out_of_school", "salaried_parent", "amo_tadamon",
                             "disabled_child", "not_in_rsu", "elderly_couple")
    for i, name in enumerate(FIXTURE_NAMES):
        assert pop.household(i).fixture == name
        assert pop.fixture(name).index == i
        assert pop.household(i).region == REGIONS[FIXTURES[name].region or 0][0]
    assert pop.household(len(FIXTURES)).fixture is None


# ---------------------------------------------------------------- employment


def test_salaried_parent_declarations_for_the_last_six_complete_months(pop: Population) -> None:
    household = pop.fixture("salaried_parent")
    father = household.father
    (job_holder, job), = household.jobs
    assert job_holder == father.idcs
    expected = ["2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
    employment = pop.employment(father.idcs, "2026-05", "2026-10")
    assert employment is not None
    assert [d.month for d in employment.declarations] == expected
    assert employment.employer == job.employer and employment.employer_cnss == job.employer_cnss
    assert re.fullmatch(r"[0-9]{9}", employment.cnss_number)
    for declaration in employment.declarations:
        assert 1 <= declaration.days <= 26
        assert 0 < declaration.salary <= job.monthly_salary
        if declaration.days == 26:
            assert declaration.salary == job.monthly_salary
    # asking beyond today never yields the current or a future month
    wider = pop.employment(father.idcs, "2026-05", "2027-03")
    assert wider is not None and [d.month for d in wider.declarations] == expected
    assert all(d.month < f"{TODAY:%Y-%m}" for d in wider.declarations)
    # nothing before the job started
    early = pop.employment(father.idcs, "2020-10", "2021-05")
    assert early is not None and [d.month for d in early.declarations] == ["2021-04", "2021-05"]
    # deterministic
    assert pop.employment(father.idcs, "2026-05", "2026-10") == employment
    assert pop.employment(household.mother.idcs, "2026-05", "2026-10") is None


def test_declarations_follow_today() -> None:
    earlier = Population(SEED, SMALL, today=date(2026, 7, 1))
    father = earlier.fixture("salaried_parent").father
    employment = earlier.employment(father.idcs, "2026-01", "2026-12")
    assert employment is not None
    assert [d.month for d in employment.declarations] == [f"2026-{m:02d}" for m in range(1, 7)]


# ---------------------------------------------------------------- statistics


def test_household_size_statistics(sample_5000: list[Household]) -> None:
    sizes = [h.size for h in sample_5000]
    assert 3.7 <= statistics.mean(sizes) <= 4.1
    rural = [h.size for h in sample_5000 if h.rural]
    urban = [h.size for h in sample_5000 if not h.rural]
    assert rural and urban
    assert statistics.mean(rural) > statistics.mean(urban)


def test_all_regions_appear(sample_5000: list[Household]) -> None:
    assert {h.region for h in sample_5000} == {name for name, *_ in REGIONS}


def test_names_come_from_the_name_lists(sample_5000: list[Household]) -> None:
    male, female, last = set(MALE_FIRST), set(FEMALE_FIRST), set(LAST)
    for household in sample_5000:
        for person in household.members:
            first = (person.first_name, person.first_name_ar)
            assert first in (male if person.sex == "M" else female), first
            assert (person.last_name, person.last_name_ar) in last
            assert person.birth_date <= REFERENCE_DATE


# ---------------------------------------------------------------- size independence


def test_small_and_large_populations_resolve_people() -> None:
    small = Population(SEED, 10_000, today=TODAY)
    big = Population(SEED, 3_200_000, today=TODAY)
    for population, i in ((small, 9_876), (big, 3_123_456)):
        idcs = population.idcs_of(i, 0)
        person = population.person(idcs)
        assert person is not None and person.household_index == i and person.slot == 0
    assert small.person(big.idcs_of(3_123_456, 0)) is None


def test_construction_holds_no_per_household_state() -> None:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        population = Population(SEED, MAX_HOUSEHOLDS, today=TODAY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024
    person = population.person(population.idcs_of(MAX_HOUSEHOLDS - 1, 1))
    assert person is not None and person.household_index == MAX_HOUSEHOLDS - 1


# ---------------------------------------------------------------- regressions (found in review)


def test_unknown_idcs_at_maximum_population_is_unknown() -> None:
    population = Population(SEED, MAX_HOUSEHOLDS, today=TODAY)
    assert_unknown_everywhere(population, population.unknown_idcs())


def test_cin_round_trip_at_the_top_of_the_population() -> None:
    population = Population(SEED, MAX_HOUSEHOLDS, today=TODAY)
    for i in (30_000_000, 42_000_000, MAX_HOUSEHOLDS - 1):
        for person in population.household(i).members[:2]:
            assert person.cin is not None
            assert population.person_by_cin(person.cin) == person


def test_non_ascii_cin_is_unknown(pop: Population) -> None:
    assert pop.person_by_cin("ß298823") is None


def test_adult_children_are_not_pupils(pop: Population) -> None:
    for household in pop.iter_households(300):
        for child in household.children:
            if (TODAY - child.birth_date).days > 22 * 366:  # 21 or older on 1 September
                assert pop.enrolment(child.idcs) is None


def test_iter_households_limit_zero_yields_nothing(pop: Population) -> None:
    assert list(pop.iter_households(0)) == []
