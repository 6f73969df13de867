"""The RSU simulator (ANR's Registre Social Unifié) on loopback: fixtures, refusals, the generation rule.

Every answer is mapped the way a declarative REST connector maps it (fields by JSON Pointer, RFC 6901) and
validated against ``schemas/records/social_registration.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

from gateway.crypto import keys
from gateway.crypto.outbound import OutboundSigner
from simulators import social_registry
from simulators.common import AUDIENCES, SimulatorContext, SimulatorControl
from simulators.population import (
    AMO_TADAMON_THRESHOLD,
    ASD_THRESHOLD,
    FIXTURES,
    REFERENCE_DATE,
    Household,
    Population,
)
from simulators.servers import DEFAULT_PORTS, start_simulators

ROOT = Path(__file__).resolve().parents[2]
POP = Population("rsu-tests", 3_000, today=date(2026, 11, 23))
AUDIENCE = "anr.rsu"
PATH = "/rsu/v1/members/{idcs}/registration"

# What a connector configuration reads from the RSU's answer, record field → JSON Pointer
POINTERS = {
    "idcs": "/idcs",
    "household_id": "/household/id",
    "registration_date": "/household/registered_on",
    "last_update": "/household/updated_on",
    "region": "/household/region",
    "members": "/household/members",
    "socio_economic_index": "/household/socio_economic_index",
}


def pointer(document: Any, path: str) -> Any:
    """RFC 6901 evaluation, written here so the test does not trust the code under test."""
    for token in path.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def mapped(answer: dict[str, Any]) -> dict[str, Any]:
    record = {field: pointer(answer, path) for field, path in POINTERS.items()}
    record["members"] = [pointer(member, "/idcs") for member in record["members"]]
    return record


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads((ROOT / "schemas" / "records" / "social_registration.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


class Rsu:
    def __init__(self, url: str, key: keys.SigningKey, control: SimulatorControl,
                 session: aiohttp.ClientSession) -> None:
        self.url, self.control, self.session = url, control, session
        self.signer = OutboundSigner(key, "anss-gateway", "anss.asd", "asd.eligibility")

    async def get(self, path: str, audience: str = AUDIENCE, sign: bool = True,
                  signed_path: str | None = None) -> tuple[int, str, Any]:
        headers = {"Authorization": self.signer("GET", signed_path or path, b"", audience)} if sign else {}
        async with self.session.get(self.url + path, headers=headers, allow_redirects=False) as resp:
            body = await resp.read()
            return resp.status, resp.content_type, json.loads(body) if body else None

    async def registration(self, idcs: str) -> tuple[int, Any]:
        status, content_type, body = await self.get(PATH.format(idcs=idcs))
        assert content_type == "application/json"
        return status, body


@asynccontextmanager
async def running(key: keys.SigningKey) -> AsyncIterator[Rsu]:
    control = SimulatorControl()
    app = social_registry.build_app(SimulatorContext(POP, {key.kid: key.public}, AUDIENCE, control))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Rsu(f"http://{server.host}:{server.port}", key, control, session)
    finally:
        await server.close()


@pytest.fixture
def key() -> keys.SigningKey:
    return keys.generate()


@pytest.fixture
async def rsu(key: keys.SigningKey) -> AsyncIterator[Rsu]:
    async with running(key) as served:
        yield served


def living(household: Household) -> list[str]:
    return [p.idcs for p in household.members if p.alive]


# ---------------------------------------------------------------- fixtures


@pytest.mark.parametrize(("name", "index"), [
    ("deceased_father", 8.9617342), ("child_out_of_school", 9.1482206), ("amo_tadamon", 8.7243915),
    ("disabled_child", 9.2051763), ("elderly_couple", 9.5318427), ("salaried_parent", 10.3175089),
])
async def test_registered_fixture_households(rsu: Rsu, validator: Draft202012Validator, name: str,
                                             index: float) -> None:
    household = POP.fixture(name)
    answers = []
    for person in household.members:  # any member, the deceased father included, finds the household
        status, body = await rsu.registration(person.idcs)
        assert status == 200, (name, person.slot, body)
        record = mapped(body)
        validator.validate(record)
        assert record["idcs"] == person.idcs
        answers.append({k: v for k, v in record.items() if k != "idcs"})
    first = answers[0]
    assert all(answer == first for answer in answers)
    assert first["members"] == living(household)
    assert first["region"] == household.region
    assert first["socio_economic_index"] == index
    assert re.fullmatch(r"[0-9]+\.[0-9]{7}", repr(first["socio_economic_index"]))
    assert first["registration_date"] <= first["last_update"] <= REFERENCE_DATE.isoformat()


async def test_the_fixtures_sit_where_the_checks_need_them(rsu: Rsu) -> None:
    async def index_of(name: str) -> float:
        status, body = await rsu.registration(POP.fixture(name).mother.idcs)
        assert status == 200
        return float(body["household"]["socio_economic_index"])

    for name in ("deceased_father", "child_out_of_school", "amo_tadamon", "disabled_child"):
        assert await index_of(name) < AMO_TADAMON_THRESHOLD < ASD_THRESHOLD  # they hold AMO Tadamon
    assert AMO_TADAMON_THRESHOLD < await index_of("elderly_couple") < ASD_THRESHOLD
    assert await index_of("salaried_parent") > ASD_THRESHOLD
    assert (ASD_THRESHOLD, AMO_TADAMON_THRESHOLD) == (9.743001, 9.3264284)


async def test_a_deceased_member_is_answered_for_but_no_longer_listed(rsu: Rsu) -> None:
    household = POP.fixture("deceased_father")
    father = household.father
    assert father.death_date is not None
    status, body = await rsu.registration(father.idcs)
    assert status == 200 and body["idcs"] == father.idcs
    members = [m["idcs"] for m in body["household"]["members"]]
    assert father.idcs not in members and len(members) == len(household.members) - 1
    assert body["household"]["updated_on"] > father.death_date.isoformat()


async def test_the_elderly_couple_has_no_child_under_21(rsu: Rsu) -> None:
    household = POP.fixture("elderly_couple")
    status, body = await rsu.registration(household.father.idcs)
    assert status == 200
    assert len(body["household"]["members"]) == 3
    ages = [(REFERENCE_DATE - p.birth_date).days / 365.25 for p in household.members]
    assert min(ages[:2]) >= 65 and all(age >= 21 for age in ages[2:])
    assert POP.coverage(household.father.idcs).scheme == "none"  # type: ignore[union-attr]


async def test_a_household_not_in_the_rsu_is_404_for_every_member(rsu: Rsu) -> None:
    household = POP.fixture("not_in_rsu")
    assert household.registration is None and FIXTURES["not_in_rsu"].rsu is None
    for person in household.members:
        assert POP.person(person.idcs) == person  # the civil registry knows them
        status, body = await rsu.registration(person.idcs)
        assert (status, body["error"]) == (404, "not_found")
        assert set(body) == {"error", "message"}
    assert POP.enrolment(household.children[0].idcs) is not None  # and so does MASSAR
    assert POP.coverage(household.father.idcs).scheme == "none"  # type: ignore[union-attr]


async def test_unknown_and_malformed_identifiers(rsu: Rsu) -> None:
    unknown = POP.unknown_idcs()
    unused_slot = POP.idcs_of(0, len(POP.household(0).members))
    for idcs in (unknown, unused_slot):
        status, body = await rsu.registration(idcs)
        assert (status, body["error"]) == (404, "not_found")
    father = POP.fixture("amo_tadamon").father.idcs
    for idcs in ("12345", father[:9] + str((int(father[9]) + 1) % 10), "abcdefghij"):
        status, body = await rsu.registration(idcs)
        assert (status, body["error"]) == (400, "bad_request")


async def test_unknown_paths_and_methods_answer_json(rsu: Rsu) -> None:
    status, content_type, body = await rsu.get("/rsu/v1/households/RSU-000000001")
    assert (status, content_type, body["error"]) == (404, "application/json", "not_found")
    path = PATH.format(idcs=POP.fixture("amo_tadamon").father.idcs)
    headers = {"Authorization": rsu.signer("POST", path, b"", AUDIENCE)}
    async with rsu.session.post(rsu.url + path, headers=headers) as resp:
        assert resp.status == 405 and (await resp.json())["error"] == "bad_request"


# ---------------------------------------------------------------- signatures


async def test_unsigned_and_wrongly_signed_calls_are_refused(rsu: Rsu, key: keys.SigningKey) -> None:
    mother, sibling = POP.fixture("amo_tadamon").mother.idcs, POP.fixture("amo_tadamon").father.idcs
    path = PATH.format(idcs=mother)
    assert (await rsu.get(path))[0] == 200
    refusals = [
        await rsu.get(path, sign=False),
        await rsu.get(path, audience=AUDIENCES["education"]),
        await rsu.get(path, signed_path=PATH.format(idcs=sibling)),
    ]
    stranger = OutboundSigner(keys.generate(), "anss-gateway", "anss.asd", "asd.eligibility")
    async with rsu.session.get(rsu.url + path, headers={"Authorization": stranger("GET", path, b"", AUDIENCE)}) as r:
        refusals.append((r.status, r.content_type, await r.json()))
    for status, content_type, body in refusals:
        assert (status, content_type, body["error"]) == (401, "application/json", "unauthorized")
        assert "household" not in body
    assert rsu.control.calls == 5


# ---------------------------------------------------------------- test controls


async def test_fail_and_rogue_controls(rsu: Rsu) -> None:
    path = PATH.format(idcs=POP.fixture("disabled_child").father.idcs)
    status, _, real = await rsu.get(path)
    assert status == 200
    rsu.control.fail = True
    status, _, body = await rsu.get(path)
    assert (status, body["error"]) == (503, "unavailable")
    rsu.control.fail = False
    rsu.control.rogue = "json_array"
    status, _, body = await rsu.get(path)
    assert (status, body) == (200, [real])
    rsu.control.rogue = "wrong_types"
    status, _, body = await rsu.get(path)
    assert status == 200 and body["household"]["socio_economic_index"] == str(real["household"]["socio_economic_index"])
    rsu.control.rogue = None
    assert (await rsu.get(path))[2] == real


# ---------------------------------------------------------------- the generated households


def test_generated_households_follow_the_documented_rule() -> None:
    registered = below_asd = above_asd = below_tadamon = 0
    ids: set[str] = set()
    households = list(POP.iter_households(2_000))[len(FIXTURES):]
    for household in households:
        found = POP.social_registration(household.father.idcs)
        if household.amo_tadamon_since is not None:  # the cover is granted on a registration below its threshold
            assert found is not None and found.socio_economic_index < AMO_TADAMON_THRESHOLD
            assert found.registered_on < household.amo_tadamon_since
        if found is None:
            assert household.registration is None
            continue
        registered += 1
        score = found.socio_economic_index
        below_asd += score <= ASD_THRESHOLD
        above_asd += score > ASD_THRESHOLD
        below_tadamon += score < AMO_TADAMON_THRESHOLD
        assert round(score, 7) == score and 7.9 <= score < 11.8
        assert date(2022, 10, 1) <= found.registered_on <= date(2025, 12, 31)
        events = [p.birth_date for p in household.members] + [p.death_date for p in household.members
                                                              if p.death_date]
        assert max([found.registered_on, *events]) <= found.updated_on <= REFERENCE_DATE
        assert list(found.members) == living(household)
        assert found.region == household.region
        assert re.fullmatch(r"RSU-[0-9]{9}", found.household_id)
        ids.add(found.household_id)
    n = len(households)
    assert len(ids) == registered  # one id per household
    assert 0.70 * n <= registered <= 0.95 * n  # most are registered, a share is not
    assert below_asd >= 0.45 * n and above_asd >= 0.10 * n  # both sides of the ASD threshold
    assert below_asd - below_tadamon >= 0.02 * n  # and some between the two thresholds


async def test_every_answer_over_http_maps_to_a_valid_record(rsu: Rsu, validator: Draft202012Validator) -> None:
    answered = refused = 0
    for household in POP.iter_households(250):
        person = household.members[-1]
        status, body = await rsu.registration(person.idcs)
        if household.registration is None:
            assert (status, body["error"]) == (404, "not_found")
            refused += 1
            continue
        assert status == 200
        record = mapped(body)
        validator.validate(record)
        assert record["household_id"] == household.registration.household_id
        assert isinstance(record["socio_economic_index"], float)
        answered += 1
    assert answered > 150 and refused > 10


def test_registrations_are_deterministic_and_do_not_change_the_people() -> None:
    again = Population("rsu-tests", 50_000, today=date(2025, 1, 1))
    for index in (0, 5, 6, 7, 123, 2_999):
        assert again.household(index) == POP.household(index)
    other = Population("another-seed", 3_000)
    assert [h.registration for h in other.iter_households(40)] != [h.registration for h in POP.iter_households(40)]
    assert other.fixture("salaried_parent").registration.socio_economic_index == 10.3175089  # type: ignore[union-attr]


# ---------------------------------------------------------------- among the other simulators


async def test_started_with_the_others_on_its_own_audience(key: keys.SigningKey) -> None:
    assert DEFAULT_PORTS["social_registry"] == 8105 and AUDIENCES["social_registry"] == AUDIENCE
    assert len(set(DEFAULT_PORTS.values())) == len(DEFAULT_PORTS) == len(AUDIENCES)
    sims = await start_simulators(POP, {key.kid: key.public})
    try:
        async with aiohttp.ClientSession() as session:
            rsu = Rsu(sims.urls["social_registry"], key, sims.controls["social_registry"], session)
            status, body = await rsu.registration(POP.fixture("elderly_couple").mother.idcs)
            assert status == 200 and body["household"]["socio_economic_index"] == 9.5318427
            assert rsu.control.calls == 1
            assert (await rsu.get(PATH.format(idcs=POP.fixture("elderly_couple").mother.idcs),
                                  audience=AUDIENCES["employment"]))[0] == 401
    finally:
        await sims.stop()


# ---------------------------------------------------------------- the documented table


def test_the_rsu_table_in_the_fixtures_doc_is_what_the_simulator_answers() -> None:
    """docs/fixtures.md gives each fixture's RSU columns for the development seed; they must stay true."""
    text = (ROOT / "docs" / "fixtures.md").read_text(encoding="utf-8")
    table = text[text.index("## RSU registrations"):text.index("## The unknown identifier")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()
            if re.match(r"\| [0-9]+ \| `", line)]
    dev = Population("anss-dev", 3_200_000)
    assert [int(row[0]) for row in rows] == list(range(len(FIXTURES)))
    for number, name, household_id, registered, updated, members, index, _position in rows:
        household = dev.household(int(number))
        assert name == f"`{household.fixture}`"
        found = dev.social_registration(household.mother.idcs)
        if found is None:
            assert household_id.startswith("—") and index == "—"
            continue
        assert household_id == f"`{found.household_id}`"
        assert (registered, updated) == (found.registered_on.isoformat(), found.updated_on.isoformat())
        assert re.findall(r"`([0-9]{10})`", members) == list(found.members)
        assert float(index) == found.socio_economic_index


def test_the_record_schema_is_strict(validator: Draft202012Validator) -> None:
    household = POP.fixture("amo_tadamon")
    found = POP.social_registration(household.father.idcs)
    assert found is not None
    good = mapped(social_registry.to_json(found))
    validator.validate(good)
    schema = json.loads((ROOT / "schemas" / "records" / "social_registration.json").read_text(encoding="utf-8"))
    assert set(schema["required"]) == set(schema["properties"]) == set(good) == set(POINTERS)
    broken = [
        {**good, "rsu_status": "active"},
        {k: v for k, v in good.items() if k != "last_update"},
        {**good, "socio_economic_index": str(good["socio_economic_index"])},
        {**good, "members": [{"idcs": m} for m in good["members"]]},
        {**good, "members": []},
        {**good, "registration_date": "05/12/2022"},
        {**good, "household_id": "614238756"},
    ]
    for record in broken:
        assert not validator.is_valid(record), record
