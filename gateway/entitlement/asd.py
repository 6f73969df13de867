"""The ASD entitlement, pure: from a household's facts and the parameters in force on a date to eligibility,
the monthly amount line by line, the reasons for a refusal, what is missing, and the birth grants due.

Nothing here reads a file or a clock: the parameters come from ``parameters.py`` (``config/rules/asd/``),
the facts from the checks (``gateway/federation/checks/asd_entitlement.py``). Each rule and each assumed
reading is in docs/asd.md. Three-valued: a known reason to refuse makes the household not eligible
whatever else is unknown; otherwise anything unknown that the amount or eligibility needs makes
``eligible`` None and is listed in ``missing``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from gateway.entitlement.parameters import ParameterTree, Snapshot, load

__all__ = [
    "REQUIRED",
    "RULES_DIR",
    "BirthGrant",
    "Child",
    "Component",
    "Entitlement",
    "HouseholdFacts",
    "entitlement",
    "load_rules",
]

RULES_DIR = Path(__file__).resolve().parent.parent.parent / "config" / "rules" / "asd"

# What this evaluator reads, and of which kind (a number, or a yes/no reading)
REQUIRED: dict[str, type] = {
    "eligibility.asd_threshold": float, "eligibility.amo_tadamon_threshold": float,
    "children.age_max": int, "children.school_age_from": int, "children.max_counted": int,
    "children.ranks_1_3_max": int,
    "children.ranks_1_3.young_or_in_school": int, "children.ranks_1_3.not_in_school": int,
    "children.ranks_1_3.father_deceased": int,
    "children.ranks_4_6.young_or_in_school": int, "children.ranks_4_6.not_in_school": int,
    "children.severe_disability_supplement": int,
    "household.floor": int, "household.without_child": int,
    "birth_grant.first_birth": int, "birth_grant.second_birth": int, "birth_grant.claim_months": int,
    "readings.eldest_first": bool, "readings.floor_before_disability_supplement": bool,
    "readings.orphan_rate_needs_school": bool,
}


def load_rules(root: Path = RULES_DIR) -> ParameterTree:
    """The ASD parameter tree, checked to hold every parameter this evaluator reads, each of the kind it reads;
    a date on which one of them has no value has no rates in force (``in_force`` is None)."""
    return load(root).require(REQUIRED)


@dataclass(frozen=True)
class Child:
    """A living child of the household (any age; those over 20 only count as births for the grants)."""

    idcs: str
    birth_date: date
    in_school: bool | None = None  # enrolled this school year; None: not known (matters at school age only)
    severe_disability: bool | None = False  # None: not known


@dataclass(frozen=True)
class HouseholdFacts:
    children: tuple[Child, ...]
    father_deceased: bool | None
    head_alive: bool | None
    registered: bool | None  # in the RSU
    index: float | None  # the RSU socio-economic index, when registered
    salaried_parent: bool | None  # a parent with salaried work declared to the CNSS (family allowances)
    other_births: tuple[date, ...] = ()  # birth dates of the household's deceased children (birth ranks)
    family_known: bool = True  # False: the civil registry could not say who the children are


@dataclass(frozen=True)
class Component:
    """One amount line: the rule (a parameter's name), the member it concerns, its amount and basis."""

    rule: str
    member: str | None
    amount_mad: int
    reference: str
    rank: int | None = None
    basis: tuple[str, ...] = ()  # the facts it rests on: birth_date, in_school, father_deceased, ...


@dataclass(frozen=True)
class BirthGrant:
    member: str
    born_on: date
    birth_rank: int
    amount_mad: int
    claim_until: date
    rule: str
    reference: str


@dataclass(frozen=True)
class Entitlement:
    on: date
    eligible: bool | None
    monthly_amount_mad: int | None
    rates_effective_from: date
    components: tuple[Component, ...]
    reasons: tuple[str, ...]  # not_registered, index_above_threshold, salaried_parent, head_not_alive
    missing: tuple[str, ...]  # "<check>.<fact>[:<member>]"
    birth_grants: tuple[BirthGrant, ...]
    threshold: float


def age_on(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def entitlement(facts: HouseholdFacts, rules: Snapshot) -> Entitlement:
    """The household's entitlement under the parameters ``rules`` (those in force on ``rules.on``)."""
    on = rules.on
    threshold = rules.number("eligibility.asd_threshold")
    reasons: list[str] = []
    missing: list[str] = []
    if facts.head_alive is False:
        reasons.append("head_not_alive")
    elif facts.head_alive is None:
        missing.append("identity.alive")
    if facts.registered is False:
        reasons.append("not_registered")
    elif facts.registered is None:
        missing.append("social_registry.registered")
    elif facts.index is None:
        missing.append("social_registry.socio_economic_index")
    elif facts.index > threshold:
        reasons.append("index_above_threshold")
    if facts.salaried_parent is True:
        reasons.append("salaried_parent")
    elif facts.salaried_parent is None:
        missing.append("employment.salaried_work_declared")
    eligible: bool | None = False if reasons else None
    components: list[Component] = []
    grants: list[BirthGrant] = []
    if eligible is None and not facts.family_known:
        missing.append("household.children")
    elif eligible is None:
        components, more = _amounts(facts, rules)
        missing += more
        grants = _birth_grants(facts, rules)
        eligible = None if missing else True
    total = sum(c.amount_mad for c in components)
    return Entitlement(on, eligible, total if eligible else None, rules.effective_from, tuple(components),
                       tuple(reasons), tuple(dict.fromkeys(missing)), tuple(grants), threshold)


def _ranked(facts: HouseholdFacts, rules: Snapshot) -> list[tuple[Child, int]]:
    """(child, age) of the children counted, in rank order."""
    on, age_max = rules.on, rules.integer("children.age_max")
    children = [(c, age_on(c.birth_date, on)) for c in facts.children if c.birth_date <= on]
    children = [(c, a) for c, a in children if a <= age_max]
    eldest_first = rules.flag("readings.eldest_first")
    children.sort(key=lambda ca: (ca[0].birth_date.toordinal() * (1 if eldest_first else -1), ca[0].idcs))
    return children


def _amounts(facts: HouseholdFacts, rules: Snapshot) -> tuple[list[Component], list[str]]:
    refs = rules.cited
    missing: list[str] = []
    lines: list[Component] = []
    supplements: list[Component] = []
    ranked = _ranked(facts, rules)
    school_from, max_counted = rules.integer("children.school_age_from"), rules.integer("children.max_counted")
    high_ranks = rules.integer("children.ranks_1_3_max")
    orphan_needs_school = rules.flag("readings.orphan_rate_needs_school")
    for rank, (child, age) in enumerate(ranked, start=1):
        if child.severe_disability is None:
            missing.append(f"health_coverage.severe_disability:{child.idcs}")
        elif child.severe_disability:  # every child under 21, counted among the six or not (docs/asd.md)
            rule = "children.severe_disability_supplement"
            supplements.append(Component(rule, child.idcs, rules.integer(rule), refs[rule], rank,
                                         ("birth_date", "severe_disability")))
        if rank > max_counted:
            continue
        basis = ["birth_date"]
        if age < school_from:
            schooled: bool | None = True
        else:
            schooled = child.in_school
            basis.append("in_school")
        if schooled is None:
            missing.append(f"schooling.enrolled:{child.idcs}")
            continue
        if rank <= high_ranks:
            group = "children.ranks_1_3."
            orphan_rate = schooled or not orphan_needs_school
            if orphan_rate and facts.father_deceased is None:
                missing.append("household.father_deceased")
                continue
            basis.append("father_deceased")
            kind = "father_deceased" if orphan_rate and facts.father_deceased else (
                "young_or_in_school" if schooled else "not_in_school")
        else:
            group, kind = "children.ranks_4_6.", "young_or_in_school" if schooled else "not_in_school"
        rule = group + kind
        lines.append(Component(rule, child.idcs, rules.integer(rule), refs[rule], rank, tuple(basis)))
    if not ranked:
        rule = "household.without_child"
        lines.append(Component(rule, None, rules.integer(rule), refs[rule], None, ("birth_date",)))
    floor = rules.integer("household.floor")
    base = sum(c.amount_mad for c in lines)
    if not rules.flag("readings.floor_before_disability_supplement"):
        base += sum(c.amount_mad for c in supplements)
    if not missing and base < floor:
        lines.append(Component("household.floor", None, floor - base, refs["household.floor"], None,
                               ("birth_date",)))  # rests on the children counted, as the lines it tops up
    return lines + supplements, missing


def _birth_grants(facts: HouseholdFacts, rules: Snapshot) -> list[BirthGrant]:
    on, months = rules.on, rules.integer("birth_grant.claim_months")
    born = sorted((c for c in facts.children if c.birth_date <= on), key=lambda c: (c.birth_date, c.idcs))
    grants = []
    for position, child in enumerate(born, start=1):
        rank = position + sum(1 for day in facts.other_births if day <= child.birth_date)
        rule = {1: "birth_grant.first_birth", 2: "birth_grant.second_birth"}.get(rank)
        until = add_months(child.birth_date, months)
        if rule is not None and on <= until:
            grants.append(BirthGrant(child.idcs, child.birth_date, rank, rules.integer(rule), until, rule,
                                     rules.cited[rule]))
    return grants
