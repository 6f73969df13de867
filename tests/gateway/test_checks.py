"""The verdict rules as pure functions over gathered evidence (records as the connectors produce them)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from connectors.base import Record, SourceNotFound, SourceTimeout, SourceUnavailable
from gateway.federation.checks import employment as employment_check
from gateway.federation.checks import household as household_check
from gateway.federation.checks import identity as identity_check
from gateway.federation.checks import schooling as schooling_check
from gateway.federation.executor import Evidence, SourceTally

identity, household = identity_check.CHECK.evaluate, household_check.CHECK.evaluate
schooling, employment = schooling_check.CHECK.evaluate, employment_check.CHECK.evaluate

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def rec(kind: str, source: str, **data: Any) -> Record:
    return Record(source=source, kind=kind, data=data, retrieved_at=NOW)


def member(idcs: str, sex: str, born: str, alive: bool = True) -> dict[str, Any]:
    return {"idcs": idcs, "first_name": "X", "last_name": "Y", "sex": sex, "birth_date": born, "alive": alive,
            "death_date": None if alive else "2025-01-01"}


def evidence(**answers: Any) -> Evidence:
    ev = Evidence(subject_idcs="1000000001", today=TODAY)
    for key, value in answers.items():
        op, idcs = key.split("__")
        ev.answers[(op, idcs)] = value
    return ev


FAMILY = rec("family", "civil_registry", idcs="1000000001",
             spouses=[member("1000000002", "M", "1980-01-01", alive=False)],
             children=[member("1000000003", "F", "2010-03-01"), member("1000000004", "M", "2022-03-01"),
                       member("1000000005", "M", "2004-01-01")])
SUBJECT = rec("person", "civil_registry", **{**member("1000000001", "F", "1985-05-05"), "cin": "AB123456",
                                               "first_name_ar": "س", "last_name_ar": "ص",
                                               "father_idcs": None, "mother_idcs": None})


def test_household_father_deceased_through_spouse() -> None:
    result = household(evidence(person__1000000001=SUBJECT, family__1000000001=FAMILY))
    assert result["verdict"]["father_deceased"] is True
    assert result["verdict"]["children_under_21"] == 2  # born 2004 is 22
    assert result["verdict"]["members_alive"] == 4


def test_schooling_unknown_pupil_is_not_enrolled_and_failure_is_unknown() -> None:
    result = schooling(evidence(family__1000000001=FAMILY, enrolment__1000000003=SourceNotFound("education")))
    child = next(c for c in result["verdict"]["children"] if c["idcs"] == "1000000003")
    assert child["enrolled"] is False and result["status"] == "verified"
    toddler = next(c for c in result["verdict"]["children"] if c["idcs"] == "1000000004")
    assert toddler["school_age"] is False and toddler["enrolled"] is None
    failed = schooling(evidence(family__1000000001=FAMILY, enrolment__1000000003=SourceTimeout("education")))
    assert failed["status"] == "partial" and failed["unverified"] == ["1000000003"]


def test_employment_verdict_is_unknown_when_a_parent_could_not_be_checked() -> None:
    living_spouse = rec("family", "civil_registry", idcs="1000000001",
                        spouses=[member("1000000002", "M", "1980-01-01")], children=[])
    result = employment(evidence(family__1000000001=living_spouse,
                                 declarations__1000000001=SourceNotFound("employment"),
                                 declarations__1000000002=SourceUnavailable("employment")))
    assert result["status"] == "partial"
    assert result["verdict"]["salaried_work_declared"] is None
    declared = rec("declarations", "employment", idcs="1000000002", employer="E", employer_cnss="1",
                   months=[{"month": "2026-10", "days": 26, "salary_mad": 4000}])
    result = employment(evidence(family__1000000001=living_spouse,
                                 declarations__1000000001=SourceUnavailable("employment"),
                                 declarations__1000000002=declared))
    assert result["verdict"]["salaried_work_declared"] is True, "one declared parent settles it"


def test_source_status_reports_its_worst_failure() -> None:
    tally = SourceTally("health", calls=3, errors=["source_timeout", "source_unavailable"])
    assert (tally.status, tally.worst_error) == ("unavailable", "source_unavailable")
    plugin = SourceTally("x", calls=1, errors=["plugin_specific"])
    assert (plugin.status, plugin.worst_error) == ("unavailable", "source_error")
    assert SourceTally("ok", calls=1).status == "ok"


def _person(alive: bool, death_date: str | None) -> Record:
    return rec("person", "civil_registry", idcs="1000000001", cin="BE123456", first_name="Ahmed", last_name="A",
               first_name_ar="أحمد", last_name_ar="أ", sex="M", birth_date="1982-07-23", alive=alive,
               death_date=death_date)


def test_a_deceased_persons_age_is_the_age_at_death() -> None:
    """Born 1982-07-23, died 2024-10-01: 42 at death (docs/fixtures.md), not the 44 he would be on TODAY."""
    dead = identity(evidence(person__1000000001=_person(False, "2024-10-01")))
    alive = identity(evidence(person__1000000001=_person(True, None)))
    assert (dead["verdict"]["alive"], dead["verdict"]["age"]) == (False, 42)
    assert (alive["verdict"]["alive"], alive["verdict"]["age"]) == (True, 44)


def test_the_family_as_on_the_day_is_worked_out_once_and_follows_a_new_answer() -> None:
    ev = evidence(family__1000000001=FAMILY)
    ev.today = date(2015, 1, 1)  # as on a day before two of the children were born
    on_the_day = ev.record("family", "1000000001")
    assert on_the_day is not None and [c["idcs"] for c in on_the_day.data["children"]] == ["1000000003", "1000000005"]
    assert ev.record("family", "1000000001") is on_the_day  # every check reads it: the same record, once
    later = rec("family", "civil_registry", idcs="1000000001", spouses=[], children=[])
    ev.answers[("family", "1000000001")] = later  # (an answer given again) is never answered from the old one
    assert ev.record("family", "1000000001") is later
