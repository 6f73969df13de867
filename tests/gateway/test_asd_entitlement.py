"""The ASD entitlement through the real simulators: the fixture households at two dates (under the 2025 and
the 2026 rates), amounts worked out by hand here from docs/fixtures.md and docs/asd.md; a source down;
field masks; the explanation in French and English; ``as_of`` refused in the future."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import Stack, build_stack

PURPOSE = "asd.eligibility"
ON_2025 = "2025-12-01"  # the rates of 2025-11-01 (250 / 175 / 375)
ON_2026 = "2026-09-01"  # the rates of 2026-01-01 (300 / 200 / 400)
CHILD, NOT_IN_SCHOOL, ORPHAN = {ON_2025: 250, ON_2026: 300}, {ON_2025: 175, ON_2026: 200}, {ON_2025: 375, ON_2026: 400}
RANK_4_6, RANK_4_6_OUT, DISABILITY, FLOOR = 36, 24, 100, 500


def head(stack: Stack, fixture: str) -> str:
    household = stack.population.fixture(fixture)
    return household.father.idcs if household.father.alive else household.mother.idcs


def children(stack: Stack, fixture: str) -> list[str]:
    return [c.idcs for c in stack.population.fixture(fixture).children]


async def entitlement(stack: Stack, fixture: str, on: str, language: str | None = None) -> dict[str, Any]:
    answer = await stack.client.verify({"idcs": head(stack, fixture)}, PURPOSE, f"ASD-{fixture}",
                                       ["asd_entitlement"], as_of=on, language=language)
    assert answer.status == 200, answer.json()
    assert answer.signature_header is not None, "signed like every verification"
    document = answer.json()
    assert document["as_of"] == on
    result: dict[str, Any] = document["checks"]["asd_entitlement"]
    return result


def lines(verdict: dict[str, Any]) -> list[tuple[str, str | None, int]]:
    return [(c["rule"], c["member"], c["amount_mad"]) for c in verdict["components"]]


def expected(stack: Stack, fixture: str, on: str) -> tuple[int | None, list[tuple[str, str | None, int]], list[str]]:
    """(monthly amount, lines, reasons) worked out by hand; children ranked eldest first."""
    kids = children(stack, fixture)
    r13 = "children.ranks_1_3."
    r46 = "children.ranks_4_6."
    if fixture == "deceased_father":  # 13 and 9 at school, 3: all three orphans of father
        got = [(r13 + "father_deceased", k, ORPHAN[on]) for k in kids]
        return 3 * ORPHAN[on], got, []
    if fixture == "child_out_of_school":  # rank 1: 15 (14 in 2025), not in school; rank 2: 8 (7), in school
        got = [(r13 + "not_in_school", kids[0], NOT_IN_SCHOOL[on]), (r13 + "young_or_in_school", kids[1], CHILD[on])]
        total = NOT_IN_SCHOOL[on] + CHILD[on]  # 425 in 2025: topped up to the floor; 500 in 2026
        if total < FLOOR:
            got.append(("household.floor", None, FLOOR - total))
        return max(total, FLOOR), got, []
    if fixture == "amo_tadamon":  # 17, 12, 6 (5 in 2025) at school or young; the fourth (1) at rank 4
        got = [(r13 + "young_or_in_school", k, CHILD[on]) for k in kids[:3]]
        got.append((r46 + "young_or_in_school", kids[3], RANK_4_6))
        return 3 * CHILD[on] + RANK_4_6, got, []
    if fixture == "disabled_child":  # one child of 11 at school, severe disability: floor, then the supplement
        got = [(r13 + "young_or_in_school", kids[0], CHILD[on]), ("household.floor", None, FLOOR - CHILD[on]),
               ("children.severe_disability_supplement", kids[0], DISABILITY)]
        return FLOOR + DISABILITY, got, []
    if fixture == "elderly_couple":  # the son is 31: no child under 21, the flat amount
        return 500, [("household.without_child", None, 500)], []
    if fixture == "seven_children":  # 19 in, 17 out, 15 in | 13 in, 11 out, 9 in | 4: not counted
        got = [(r13 + "young_or_in_school", kids[0], CHILD[on]), (r13 + "not_in_school", kids[1], NOT_IN_SCHOOL[on]),
               (r13 + "young_or_in_school", kids[2], CHILD[on]), (r46 + "young_or_in_school", kids[3], RANK_4_6),
               (r46 + "not_in_school", kids[4], RANK_4_6_OUT), (r46 + "young_or_in_school", kids[5], RANK_4_6)]
        return 2 * CHILD[on] + NOT_IN_SCHOOL[on] + 2 * RANK_4_6 + RANK_4_6_OUT, got, []
    if fixture == "newborn":  # in 2025 only the elder (2) is born: floor; in 2026 both children
        if on == ON_2025:
            return FLOOR, [(r13 + "young_or_in_school", kids[0], CHILD[on]),
                           ("household.floor", None, FLOOR - CHILD[on])], []
        got = [(r13 + "young_or_in_school", k, CHILD[on]) for k in kids]
        return 2 * CHILD[on], got, []
    if fixture == "salaried_parent":
        return None, [], ["index_above_threshold", "salaried_parent"]
    if fixture == "not_in_rsu":
        return None, [], ["not_registered"]
    if fixture == "above_threshold":
        return None, [], ["index_above_threshold"]
    raise AssertionError(fixture)


FIXTURES = ["deceased_father", "child_out_of_school", "salaried_parent", "amo_tadamon", "disabled_child", "not_in_rsu",
            "elderly_couple", "seven_children", "newborn", "above_threshold"]


async def test_the_table_at_two_dates(tmp_path: Path) -> None:
    async with build_stack(tmp_path) as stack:
        for on in (ON_2025, ON_2026):
            for fixture in FIXTURES:
                result = await entitlement(stack, fixture, on)
                verdict = result["verdict"]
                amount, want, reasons = expected(stack, fixture, on)
                where = f"{fixture} on {on}"
                assert verdict["rates_effective_from"] == ("2025-11-01" if on == ON_2025 else "2026-01-01"), where
                assert verdict["reasons"] == reasons, where
                assert verdict["eligible"] is (amount is not None), where
                assert verdict["monthly_amount_mad"] == amount, where
                assert sorted(lines(verdict), key=str) == sorted(want, key=str), where
                assert sum(c["amount_mad"] for c in verdict["components"]) == (amount or 0), where
                assert verdict["missing"] == [] and result["status"] == "verified", where
                for component in verdict["components"]:
                    assert "58-23" in component["legal_reference"], where
                    assert {f["name"] for f in component["facts"]} >= {"birth_date"}, where  # every line
                    assert all(f["source"] and f["retrieved_at"] for f in component["facts"]), where
                grants = [(g["member"], g["amount_mad"], g["birth_rank"]) for g in verdict["birth_grants"]]
                if fixture == "newborn" and on == ON_2026:  # born 2026-07-02, the second birth: 1,000 MAD
                    assert grants == [(children(stack, "newborn")[1], 1000, 2)], where
                    assert verdict["birth_grants"][0]["claim_until"] == "2027-01-02"
                else:
                    assert grants == [], where
                assert verdict["explanation"] and all(isinstance(line, str) for line in verdict["explanation"])


async def test_orphan_components_name_the_fathers_death(stack: Stack) -> None:
    verdict = (await entitlement(stack, "deceased_father", ON_2026))["verdict"]
    father = stack.population.fixture("deceased_father").father.idcs
    for component in verdict["components"]:
        facts = {(f["name"], f["about"]): f for f in component["facts"]}
        assert facts[("alive", father)]["value"] is False and facts[("alive", father)]["source"] == "civil_registry"
        assert facts[("death_date", father)]["value"] == "2024-10-01"
        if component["member"] != children(stack, "deceased_father")[2]:  # the 3-year-old has no MASSAR record
            assert facts[("status", component["member"])]["source"] == "education"


async def test_a_source_down_leaves_eligibility_open_and_says_what_is_missing(stack: Stack) -> None:
    stack.simulators.controls["social_registry"].fail = True
    result = await entitlement(stack, "amo_tadamon", ON_2026)
    assert result["status"] == "partial"
    assert result["verdict"]["eligible"] is None and result["verdict"]["monthly_amount_mad"] is None
    assert result["verdict"]["missing"] == ["social_registry.registered"]
    assert result["unverified"] == ["social_registry.registered"]
    stack.simulators.controls["social_registry"].fail = False
    stack.simulators.controls["education"].fail = True
    verdict = (await entitlement(stack, "child_out_of_school", ON_2026))["verdict"]
    kids = children(stack, "child_out_of_school")
    assert verdict["eligible"] is None
    assert verdict["missing"] == [f"schooling.enrolled:{k}" for k in kids]
    stack.simulators.controls["education"].fail = False
    stack.simulators.controls["employment"].fail = True
    verdict = (await entitlement(stack, "not_in_rsu", ON_2026))["verdict"]
    assert verdict["eligible"] is False and verdict["reasons"] == ["not_registered"], "a known refusal stands"


async def test_explanation_follows_the_request_language(stack: Stack) -> None:
    fr = (await entitlement(stack, "disabled_child", ON_2026))["verdict"]
    en = (await entitlement(stack, "disabled_child", ON_2026, language="en"))["verdict"]
    assert fr["language"] == "fr" and en["language"] == "en"
    assert fr["explanation"][-1] == "Montant mensuel indicatif : 600 MAD."
    assert en["explanation"][-1] == "Indicative monthly amount: 600 MAD."
    assert lines(fr) == lines(en)


MASKS = frozenset({"asd_entitlement.birth_date:children", "asd_entitlement.socio_economic_index",
                   "social_registry.socio_economic_index"})


async def test_field_masks_withhold_the_facts_it_repeats(tmp_path: Path) -> None:
    from dataclasses import replace

    from gateway.config.settings import Settings

    def mask(settings: Settings) -> Settings:
        client = settings.clients["anss.asd"]
        rights = tuple(replace(r, deny=r.deny | MASKS) for r in client.rights)
        return replace(settings, clients={**settings.clients, "anss.asd": replace(client, rights=rights)})

    async with build_stack(tmp_path, mask) as stack:
        result = await entitlement(stack, "amo_tadamon", ON_2026)
        kids = set(children(stack, "amo_tadamon"))
        assert result["withheld"] == sorted(m for m in MASKS if m.startswith("asd_entitlement."))
        assert not [f for f in result["facts"] if f["name"] == "birth_date" and f["about"] in kids]
        for component in result["verdict"]["components"]:
            assert not [f for f in component["facts"] if f["name"] == "birth_date"]
        assert result["verdict"]["monthly_amount_mad"] == 3 * 300 + 36, "verdicts stay"

        # nothing withheld is left in the verdict: not the RSU index in its words, not a newborn's birth date
        # (nor the claim date reckoned from it) in its birth grant
        household = stack.population.fixture("newborn")
        newborn = max(household.children, key=lambda c: c.birth_date)
        answer = await stack.client.verify({"idcs": household.father.idcs}, PURPOSE, "ASD-MASK",
                                           ["asd_entitlement", "social_registry"], as_of=ON_2026)
        assert answer.status == 200, answer.body
        checks = answer.json()["checks"]
        verdict = checks["asd_entitlement"]["verdict"]
        (grant,) = verdict["birth_grants"]
        assert (grant["member"], grant["amount_mad"]) == (newborn.idcs, 1000), "the grant stays"
        assert grant["born_on"] is None and grant["claim_until"] is None
        for secret in (newborn.birth_date.isoformat(), "2027-01-02"):
            assert secret.encode() not in answer.body, secret
        assert any("né(e) le …" in line and "avant le …" in line for line in verdict["explanation"])
        registry = checks["social_registry"]
        assert registry["withheld"] == ["social_registry.socio_economic_index"]
        assert registry["verdict"]["socio_economic_index"] is None
        assert registry["verdict"]["below_asd_threshold"] is True, "the conclusions stay"
        (rsu,) = [line for line in verdict["explanation"] if line.startswith("RSU")]
        assert ", indice … (seuil " in rsu, rsu


async def test_as_of_in_the_future_is_refused(stack: Stack) -> None:
    answer = await stack.client.verify({"idcs": head(stack, "amo_tadamon")}, PURPOSE, "ASD-future",
                                       ["asd_entitlement"], as_of="2999-01-01")
    assert answer.status == 400 and answer.json()["code"] == "invalid_request"


async def test_before_the_programme_no_rates_are_in_force(stack: Stack) -> None:
    result = await entitlement(stack, "amo_tadamon", "2023-06-01")
    assert result["verdict"]["eligible"] is None and result["verdict"]["missing"] == ["rates_in_force"]


async def test_as_of_before_a_birth_leaves_out_who_was_not_born_yet(stack: Stack) -> None:
    """A retroactive verification sees the household as it was: children born later are not in it, and a subject
    born later is not known on that day."""
    household = stack.population.fixture("amo_tadamon")
    youngest = max(household.children, key=lambda c: c.birth_date)
    before = youngest.birth_date.replace(year=youngest.birth_date.year - 1)
    answer = await stack.client.verify({"idcs": household.father.idcs}, "asd.eligibility", "CASE-BEFORE",
                                       ["household", "schooling"], as_of=before.isoformat())
    assert answer.status == 200, answer.body
    checks = answer.json()["checks"]
    listed = [c["idcs"] for c in checks["schooling"]["verdict"]["children"]]
    assert youngest.idcs not in listed and listed
    assert all(c["age"] >= 0 for c in checks["schooling"]["verdict"]["children"])
    born_later = await stack.client.verify({"idcs": youngest.idcs}, "asd.eligibility", "CASE-UNBORN",
                                           ["identity"], as_of=before.isoformat())
    assert (born_later.status, born_later.json()["code"]) == (404, "subject_not_found")


async def test_a_child_asked_as_the_subject_is_sent_to_a_parent_not_paid_as_a_household_without_children(
        stack: Stack) -> None:
    """A child's own family record lists no children: read as a household, it was 'without a child under 21'
    and paid 500 MAD. The child is not the head: undecided, ask through a parent."""
    household = stack.population.fixture("deceased_father")
    child = next(c for c in household.children if c.alive)
    result = (await entitlement_of(stack, child.idcs, ON_2026))
    verdict = result["verdict"]
    assert (verdict["eligible"], verdict["monthly_amount_mad"], verdict["components"]) == (None, None, [])
    assert verdict["missing"] == ["head_of_household"] and result["status"] != "verified"
    assert "parents" in " ".join(verdict["explanation"]) or "parent" in " ".join(verdict["explanation"])
    through_the_mother = (await entitlement_of(stack, household.mother.idcs, ON_2026))["verdict"]
    assert through_the_mother["eligible"] is True and through_the_mother["monthly_amount_mad"] > 500


async def entitlement_of(stack: Stack, idcs: str, on: str) -> dict[str, Any]:
    answer = await stack.client.verify({"idcs": idcs}, PURPOSE, "ASD-WHO", ["asd_entitlement"], as_of=on)
    assert answer.status == 200, answer.body
    result: dict[str, Any] = answer.json()["checks"]["asd_entitlement"]
    return result


async def test_as_of_before_a_death_sees_the_person_alive_in_every_check(stack: Stack) -> None:
    """docs/asd.md: as on that date — a death after as_of did not yet count, for every check alike (identity,
    household, employment used to report it, while asd_entitlement rewound it)."""
    household = stack.population.fixture("deceased_father")
    father, mother = household.father, household.mother
    assert father.death_date is not None
    before = father.death_date.replace(day=1) if father.death_date.day > 1 else father.death_date.replace(
        year=father.death_date.year - 1)
    checks = ["identity", "household", "employment", "asd_entitlement"]
    answer = await stack.client.verify({"idcs": father.idcs}, PURPOSE, "ASD-ALIVE", ["identity"],
                                       as_of=before.isoformat())
    identity = answer.json()["checks"]["identity"]
    assert identity["verdict"]["alive"] is True
    assert {f["name"]: f["value"] for f in identity["facts"]}["death_date"] is None
    answer = await stack.client.verify({"idcs": mother.idcs}, PURPOSE, "ASD-ALIVE-2", checks, as_of=before.isoformat())
    assert answer.status == 200, answer.body
    result = answer.json()["checks"]
    assert result["household"]["verdict"]["father_deceased"] is False
    assert result["household"]["verdict"]["members_alive"] == 1 + len(household.children) + 1
    assert father.idcs in {p["idcs"] for p in result["employment"]["verdict"]["persons"]}
    after = await stack.client.verify({"idcs": mother.idcs}, PURPOSE, "ASD-DEAD", ["household"],
                                      as_of=father.death_date.isoformat())
    assert after.json()["checks"]["household"]["verdict"]["father_deceased"] is True


@pytest.mark.parametrize("as_of", ["20251201", "2025-W49-1", "2025-12", "2025-12-1", "2025-02-30"])
async def test_as_of_is_a_calendar_date_written_yyyy_mm_dd(stack: Stack, as_of: str) -> None:
    """``date.fromisoformat`` alone reads 20251201 and week dates; the contract is RFC 3339's full-date."""
    answer = await stack.client.verify({"idcs": head(stack, "amo_tadamon")}, PURPOSE, "ASD-form",
                                       ["asd_entitlement"], as_of=as_of)
    assert answer.status == 400 and answer.json()["code"] == "invalid_request"
    assert direct_as_of(as_of) is None


def direct_as_of(as_of: str) -> None:
    """The same refusal where batches read it (a query parameter, no request schema in front)."""
    from gateway.api.verifications import _as_of
    from gateway.errors import BadRequest

    with pytest.raises(BadRequest, match="is not a date"):
        _as_of(as_of)
