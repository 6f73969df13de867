"""POST /v1/verifications end to end: gateway → four simulators over loopback, no mocks of our code."""

from __future__ import annotations

from datetime import date
from typing import Any

from tests.gateway.conftest import Stack

PURPOSE = "asd.eligibility"


async def verify(stack: Stack, subject: dict[str, str], checks: list[str] | None = None) -> tuple[int, Any]:
    answer = await stack.client.verify(subject, PURPOSE, "CASE-2026-0001", checks)
    assert answer.signature_header is not None, "every answer must carry a valid signature"
    assert answer.signature_header["request_id"] == answer.headers["X-Request-Id"]
    return answer.status, answer.json()


def sources(document: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in document["sources"]}


async def test_deceased_father_household_all_sources(stack: Stack) -> None:
    household = stack.population.fixture("deceased_father")
    status, doc = await verify(stack, {"idcs": household.mother.idcs})
    assert status == 200
    assert sources(doc) == dict.fromkeys(["civil_registry", "education", "health", "employment", "social_registry"],
                                         "ok")
    assert doc["complete"] is True
    assert doc["checks"]["household"]["verdict"]["father_deceased"] is True
    assert doc["checks"]["household"]["verdict"]["children_under_21"] == 3
    identity = doc["checks"]["identity"]
    assert identity["verdict"]["alive"] is True
    facts = {f["name"]: f for f in identity["facts"]}
    assert facts["birth_date"]["value"] == household.mother.birth_date.isoformat()
    assert facts["last_name"]["value"] == household.mother.last_name
    assert all(f["source"] == "civil_registry" and f["retrieved_at"] for f in identity["facts"])
    schooling = doc["checks"]["schooling"]["verdict"]
    assert schooling["children_6_20"] == 2 and schooling["children_6_20_enrolled"] == 2
    assert doc["checks"]["health_coverage"]["verdict"]["amo_tadamon"] is True


async def test_child_out_of_school(stack: Stack) -> None:
    household = stack.population.fixture("child_out_of_school")
    status, doc = await verify(stack, {"idcs": household.father.idcs}, ["schooling"])
    assert status == 200
    assert list(doc["checks"]) == ["schooling"]
    children = {c["idcs"]: c for c in doc["checks"]["schooling"]["verdict"]["children"]}
    teen, young = household.children
    assert children[teen.idcs]["enrolled"] is False
    assert children[young.idcs]["enrolled"] is True
    assert sources(doc) == {"civil_registry": "ok", "education": "ok"}, "only the sources the check needs"


async def test_salaried_parent_and_coverage(stack: Stack) -> None:
    household = stack.population.fixture("salaried_parent")
    status, doc = await verify(stack, {"idcs": household.mother.idcs}, ["employment", "health_coverage"])
    assert status == 200
    employment = doc["checks"]["employment"]["verdict"]
    assert employment["salaried_work_declared"] is True
    by_person = {p["idcs"]: p for p in employment["persons"]}
    assert by_person[household.father.idcs]["salaried_work_declared"] is True
    assert by_person[household.mother.idcs]["salaried_work_declared"] is False
    assert doc["checks"]["health_coverage"]["verdict"]["scheme"] == "amo_contributory"


async def test_disabled_child_flagged(stack: Stack) -> None:
    household = stack.population.fixture("disabled_child")
    status, doc = await verify(stack, {"idcs": household.father.idcs}, ["health_coverage"])
    assert status == 200
    assert doc["checks"]["health_coverage"]["verdict"]["severe_disability"] == [household.children[0].idcs]


async def test_subject_by_cin(stack: Stack) -> None:
    father = stack.population.fixture("amo_tadamon").father
    assert father.cin is not None
    status, doc = await verify(stack, {"cin": father.cin}, ["identity"])
    assert status == 200
    assert doc["subject"] == {"idcs": father.idcs}
    assert doc["checks"]["identity"]["verdict"]["known"] is True


async def test_unknown_subject_is_404(stack: Stack) -> None:
    status, doc = await verify(stack, {"idcs": stack.population.unknown_idcs()})
    assert status == 404
    assert doc["code"] == "subject_not_found"
    assert doc["type"].endswith("subject_not_found") and doc["request_id"]


async def test_source_down_makes_only_its_checks_unavailable(stack: Stack) -> None:
    stack.simulators.controls["education"].fail = True
    household = stack.population.fixture("deceased_father")
    status, doc = await verify(stack, {"idcs": household.mother.idcs})
    assert status == 200
    assert doc["complete"] is False
    assert sources(doc)["education"] == "unavailable"
    assert doc["checks"]["schooling"]["status"] == "partial"
    assert all(c["enrolled"] is None for c in doc["checks"]["schooling"]["verdict"]["children"] if c["school_age"])
    for check in ("identity", "household", "health_coverage", "employment"):
        assert doc["checks"][check]["status"] == "verified", check


async def test_source_stopped_entirely(stack: Stack) -> None:
    runner = stack.simulators.runners[2]  # health
    await runner.cleanup()
    household = stack.population.fixture("amo_tadamon")
    status, doc = await verify(stack, {"idcs": household.father.idcs}, ["identity", "health_coverage"])
    assert status == 200
    assert sources(doc)["health"] == "unavailable"
    assert doc["checks"]["health_coverage"]["status"] == "unavailable"
    assert doc["checks"]["identity"]["status"] == "verified"


async def test_slow_source_times_out(stack: Stack) -> None:
    stack.simulators.controls["employment"].delay_s = 2.5  # connector timeout is 1.5 s in tests
    household = stack.population.fixture("salaried_parent")
    status, doc = await verify(stack, {"idcs": household.father.idcs}, ["identity", "employment"])
    assert status == 200
    assert sources(doc)["employment"] == "timeout"
    assert next(s for s in doc["sources"] if s["name"] == "employment")["error"] == "source_timeout"
    assert "error" not in next(s for s in doc["sources"] if s["name"] == "civil_registry")
    assert doc["checks"]["employment"]["status"] == "unavailable"
    assert doc["checks"]["identity"]["status"] == "verified"


async def test_civil_registry_down_by_cin_everything_unavailable(stack: Stack) -> None:
    stack.simulators.controls["civil_registry"].fail = True
    father = stack.population.fixture("amo_tadamon").father
    assert father.cin is not None
    status, doc = await verify(stack, {"cin": father.cin})
    assert status == 200
    assert {c["status"] for c in doc["checks"].values()} == {"unavailable"}
    assert "Traceback" not in str(doc)


async def test_default_checks_are_those_allowed(stack: Stack) -> None:
    household = stack.population.fixture("amo_tadamon")
    status, doc = await verify(stack, {"idcs": household.father.idcs})
    assert status == 200
    assert list(doc["checks"]) == ["identity", "household", "schooling", "health_coverage", "employment",
                                   "social_registry", "asd_entitlement"]
    tadamon = stack.client_for("cnss.amo-tadamon")
    async with tadamon:
        answer = await tadamon.verify({"idcs": household.father.idcs}, "amo.tadamon.eligibility", "T-1")
    assert answer.status == 200
    assert list(answer.json()["checks"]) == ["identity", "health_coverage", "social_registry"]


async def test_employment_period_is_last_six_complete_months(stack: Stack) -> None:
    household = stack.population.fixture("salaried_parent")
    _, doc = await verify(stack, {"idcs": household.father.idcs}, ["employment"])
    period = doc["checks"]["employment"]["verdict"]["period"]
    today = date.today()
    assert period["to"] < f"{today.year:04d}-{today.month:02d}"
    months = next(f["value"] for f in doc["checks"]["employment"]["facts"]
                  if f["name"] == "declared_months" and f["about"] == household.father.idcs)
    assert months and all(period["from"] <= m <= period["to"] for m in months)


async def test_stages_fan_out_concurrently(stack: Stack) -> None:
    """Stage 1 asks independent sources at once; stage 2 asks for all children's enrolments at once."""
    household = stack.population.fixture("amo_tadamon")  # three children aged 6–20, one toddler
    for control in stack.simulators.controls.values():
        control.delay_s = 0.1  # long enough for concurrent calls to overlap, well inside the 1.5 s timeout
    status, doc = await verify(stack, {"idcs": household.father.idcs})
    assert status == 200 and doc["complete"] is True
    controls = stack.simulators.controls
    assert controls["education"].calls == 3
    assert controls["education"].max_in_flight == 3, "the children's enrolments are asked at once"
    assert controls["health"].max_in_flight == 4, "the three children's and the toddler's coverage at once"
    assert controls["civil_registry"].max_in_flight == 2, "person and family at once"
    assert controls["employment"].max_in_flight == 1 and controls["employment"].calls == 2


async def test_salaried_work_unknown_when_spouse_unchecked(stack: Stack) -> None:
    """Nobody declared among those checked, but one parent could not be checked: the verdict is unknown."""
    household = stack.population.fixture("amo_tadamon")
    controls = stack.simulators.controls["employment"]
    original = controls.calls
    controls.fail = True
    status, doc = await verify(stack, {"idcs": household.father.idcs}, ["employment"])
    assert status == 200 and controls.calls > original
    assert doc["checks"]["employment"]["status"] == "unavailable"
    controls.fail = False
    status, doc = await verify(stack, {"idcs": household.father.idcs}, ["employment"])
    assert doc["checks"]["employment"]["verdict"]["salaried_work_declared"] is False
