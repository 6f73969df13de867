"""The statute's rules, each written once and used by both the plans (what to ask) and the evaluations
(what to conclude), so the two cannot drift apart.

- School age: 6 to 20 years old inclusive (law 58-23: a child of 6–20 counts as in school or not).
- A child (for the household, health and allowance rules): under 21, i.e. aged 20 or less.
- Declared work: the last six complete calendar months before today's month.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from gateway.federation.calendar import age_on, last_complete_months

SCHOOL_AGE_FROM = 6
SCHOOL_AGE_TO = 20
CHILD_AGE_TO = 20  # "under 21"
DECLARATION_MONTHS = 6


def is_school_age(age: int) -> bool:
    return SCHOOL_AGE_FROM <= age <= SCHOOL_AGE_TO


def is_child(age: int) -> bool:
    """Under 21."""
    return age <= CHILD_AGE_TO


def age_of(member: Mapping[str, Any], today: date) -> int:
    """A family member's age today, from the civil record's ``birth_date``."""
    return age_on(date.fromisoformat(member["birth_date"]), today)


def living_children(family: Mapping[str, Any], today: date) -> Iterator[tuple[Mapping[str, Any], int]]:
    """(child, age) for every living child of a civil-registry family record."""
    for child in family["children"]:
        if child["alive"]:
            yield child, age_of(child, today)


def declaration_window(today: date) -> tuple[str, str]:
    """(from, to) as YYYY-MM: the months whose salary declarations count."""
    return last_complete_months(today, DECLARATION_MONTHS)
