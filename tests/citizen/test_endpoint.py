"""``GET /v1/citizen/access-log`` on a real gateway in front of the four simulators; the tests are the
citizens' identity provider. Verifications and consents are made by the real clients over HTTP."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.citizen import devidp
from gateway.client import Answer
from gateway.config.settings import ConfigError, RateLimit, Settings
from gateway.web.runner import gateway_running
from tests.citizen.conftest import PATH, CitizenStack, trusting
from tests.citizen.idp import IdentityProvider
from tests.citizen.test_token import _defects
from tests.citizen.walk import assert_nothing_internal
from tests.consent.test_api import granted
from tests.gateway.conftest import build_stack, make_settings
from tests.gateway.test_openapi import SCHEMAS, assert_valid, check_against_openapi, check_problem

ASD, AMO, HOUSING = "asd.eligibility", "amo.tadamon.eligibility", "partner.social-housing"
ANSS_FR = "Agence nationale du soutien social (ANSS) — service de l'aide sociale directe"
CNSS_FR = "Caisse nationale de sécurité sociale (CNSS) — immatriculation AMO Tadamon"
HOUSING_FR = "Ministère de l'Habitat — programme de logement social"
ASD_STATUTE = "Loi n° 58-23 relative au régime de soutien social direct; décrets n° 2.23.1067 et 2.23.1068"
AMO_STATUTE = "Loi n° 65-00 portant code de la couverture médicale de base, telle que modifiée par la loi n° 60-22"


def page(answer: Answer) -> dict[str, Any]:
    """A 200 page, signed, following the OpenAPI document and the JSON Schema."""
    assert answer.status == 200, answer.body[:500]
    assert answer.signature_header is not None, "signed like every answer"
    document: dict[str, Any] = check_against_openapi(answer, "get", PATH)
    assert_valid((SCHEMAS / "citizen-access-log.json").as_uri(), document)
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Content-Language"] == document["language"]
    return document


async def everything(citizens: CitizenStack, token: str, limit: int = 100) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        document = page(await citizens.read(token, f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")))
        shown += document["entries"]
        cursor = document["next_cursor"]
        if cursor is None:
            return shown
    raise AssertionError("the pages never end")


async def test_a_citizen_sees_who_checked_their_data_and_another_citizen_does_not(citizens: CitizenStack) -> None:
    stack, idp = citizens.stack, citizens.idp
    a = stack.population.fixture("salaried_parent").father
    b = stack.population.fixture("deceased_father").mother
    assert a.cin is not None
    assert (await stack.client.verify({"idcs": a.idcs}, ASD, "DOSSIER-A-1")).status == 200
    async with stack.client_for("cnss.amo-tadamon") as cnss:
        assert (await cnss.verify({"cin": a.cin}, AMO, "AMO-2026-7", ["identity"])).status == 200
    assert (await stack.client.verify({"idcs": b.idcs}, ASD, "DOSSIER-B-9")).status == 200

    shown = page(await citizens.read(idp.token(a.idcs)))
    assert shown["language"] == "fr" and shown["next_cursor"] is None
    assert [(e["by"], e["purpose"], e["case_ref"], e["legal_basis"], e["outcome"]) for e in shown["entries"]] == [
        (CNSS_FR, "AMO Tadamon — éligibilité d'un ménage", "AMO-2026-7", {"type": "statute", "statute": AMO_STATUTE},
         "answered"),
        (ANSS_FR, "Aide sociale directe — éligibilité et revue périodique", "DOSSIER-A-1",
         {"type": "statute", "statute": ASD_STATUTE}, "answered"),
    ], "newest first; the query by CIN is theirs too (the gateway resolved it to their IDCS)"
    assert shown["entries"][0]["data"] == ["Identité et état civil"]
    assert shown["entries"][1]["data"] == ["Identité et état civil", "Composition du ménage", "Scolarité des enfants",
                                           "Couverture médicale", "Emploi et déclarations de salaire",
                                           "Inscription au Registre social unifié (RSU)",
                                           "Droit à l'aide sociale directe (ASD) et montant indicatif"]
    assert {e["event"] for e in shown["entries"]} == {"verification"}

    theirs = page(await citizens.read(idp.token(b.idcs)))
    assert [e["case_ref"] for e in theirs["entries"]] == ["DOSSIER-B-9"]
    assert "DOSSIER-A-1" not in orjson.dumps(theirs).decode()
    nobody = page(await citizens.read(idp.token(stack.population.unknown_idcs())))
    assert nobody["entries"] == [] and nobody["next_cursor"] is None


async def test_in_english_on_request(citizens: CitizenStack) -> None:
    stack = citizens.stack
    a = stack.population.fixture("salaried_parent").father
    assert (await stack.client.verify({"idcs": a.idcs}, ASD, "DOSSIER-EN", ["identity"])).status == 200
    english = {"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"}
    shown = page(await citizens.read(citizens.idp.token(a.idcs), headers=english))
    assert shown["language"] == "en"
    assert shown["entries"][0] | {"time": None} == {
        "time": None, "event": "verification", "event_label": "Your data was checked",
        "by": "National Social Support Agency (ANSS) — direct social support service",
        "purpose": "Direct social support (ASD) — eligibility and periodic review", "case_ref": "DOSSIER-EN",
        "data": ["Identity and civil status"], "legal_basis": {"type": "statute", "statute": ASD_STATUTE},
        "outcome": "answered", "outcome_label": "Answered in full"}


async def test_a_consent_based_query_shows_the_consent_and_the_consent_changes(citizens: CitizenStack) -> None:
    stack, idp = citizens.stack, citizens.idp
    a = stack.population.fixture("salaried_parent").father
    async with stack.client_for("mhpv.housing") as housing:
        consent = await granted(housing, a.idcs, checks=["identity", "household"])
        assert (await housing.verify({"idcs": a.idcs}, HOUSING, "LOGEMENT-12", ["identity"])).status == 200
        revoke = await housing.request("POST", f"/v1/consents/{consent['consent_id']}/revoke",
                                       {"reason": "withdrawn by the citizen, letter 2026/456"})
        assert revoke.status == 200
        assert (await housing.verify({"idcs": a.idcs}, HOUSING, "LOGEMENT-13", ["identity"])).status == 403

    shown = page(await citizens.read(idp.token(a.idcs)))["entries"]
    assert [(e["event"], e["by"], e["outcome"]) for e in shown] == [
        ("verification", HOUSING_FR, "refused"),
        ("consent_revoked", HOUSING_FR, None),
        ("verification", HOUSING_FR, "answered"),
        ("consent_granted", HOUSING_FR, None),
    ]
    refused, revoked, answered, recorded = shown
    expected = {
        "consent_id": consent["consent_id"], "grantee": HOUSING_FR, "status": "revoked",
        "granted_at": consent["created_at"][:19] + "Z", "valid_from": consent["valid_from"][:19] + "Z",
        "valid_until": consent["valid_until"][:19] + "Z", "revoked_at": revoked["legal_basis"]["consent"]["revoked_at"],
        "evidence": consent["evidence"],
    }
    for event in shown:
        assert event["legal_basis"] == {"type": "consent", "consent": expected}, event
        assert event["purpose"] == ("Programme de logement social — éligibilité du ménage demandeur, avec le "
                                    "consentement du demandeur")
    assert (answered["case_ref"], refused["case_ref"], recorded["case_ref"]) == ("LOGEMENT-12", "LOGEMENT-13", None)
    assert refused["outcome_label"] == "Demande refusée : aucune donnée n'a été communiquée"
    assert "withdrawn by the citizen" not in orjson.dumps(shown).decode(), "the revocation's reason is not shown"


async def test_no_internal_detail_anywhere_in_the_answer(citizens: CitizenStack) -> None:
    stack, idp = citizens.stack, citizens.idp
    a = stack.population.fixture("deceased_father").mother
    stack.simulators.controls["education"].fail = True  # a partial answer: a source with an error code
    answers = [await stack.client.verify({"idcs": a.idcs}, ASD, "CASE-PARTIAL")]
    stack.simulators.controls["education"].fail = False
    async with stack.client_for("mhpv.housing") as housing:
        consent = await granted(housing, a.idcs, checks=["identity"])
        answers.append(await housing.verify({"idcs": a.idcs}, HOUSING, "CASE-CONSENT", ["identity"]))
        answers.append(await housing.verify({"idcs": a.idcs}, HOUSING, "CASE-OUT", ["household"]))  # out of scope
    token = idp.token(a.idcs, a.cin)
    answer = await citizens.read(token)
    document = page(answer)
    assert [e["outcome"] for e in document["entries"] if e["event"] == "verification"] == [
        "refused", "answered", "partial"]

    log = [entry for _, entry in citizens.log()]
    mine = [e for e in log if e.get("subject") == citizens.pseudonymiser.pseudonym("idcs", a.idcs)]
    secrets = {a.idcs, a.cin or "", answer.headers["X-Request-Id"], *(x.headers["X-Request-Id"] for x in answers),
               citizens.pseudonymiser.pseudonym("idcs", a.idcs), citizens.pseudonymiser.pseudonym("cin", a.cin or ""),
               "anss.asd", "mhpv.housing", "civil_registry", "education", "source_unavailable", "unavailable",
               "consent_out_of_scope", "/v1/", *(e["request_sha256"] or "" for e in mine),
               *(e["response_sha256"] or "" for e in mine),
               *(e.get("request_hmac") or "" for e in mine), *(e.get("response_hmac") or "" for e in mine),
               *(str(e["latency_ms"]) for e in mine),
               str(consent["citizen"]), *idp.keys}
    assert assert_nothing_internal(document, secrets) > 60
    for entry in document["entries"]:
        assert set(entry) == {"time", "event", "event_label", "by", "purpose", "case_ref", "data", "legal_basis",
                              "outcome", "outcome_label"}


async def test_pagination_to_the_end_skipping_what_is_not_shown(citizens: CitizenStack) -> None:
    stack, idp = citizens.stack, citizens.idp
    a = stack.population.fixture("amo_tadamon").father
    other = stack.population.fixture("disabled_child").father
    token = idp.token(a.idcs)
    for i in range(7):
        assert (await stack.client.verify({"idcs": a.idcs}, ASD, f"PAGE-{i}", ["identity"])).status == 200
        assert (await stack.client.verify({"idcs": other.idcs}, ASD, f"OTHER-{i}", ["identity"])).status == 200
        assert (await citizens.read(token, "?limit=1")).status == 200  # the citizen's own reads: logged, not shown
    pages = []
    cursor = None
    while True:
        document = page(await citizens.read(token, "?limit=3" + (f"&cursor={cursor}" if cursor else "")))
        pages.append([e["case_ref"] for e in document["entries"]])
        cursor = document["next_cursor"]
        if cursor is None:
            break
    assert pages == [["PAGE-6", "PAGE-5", "PAGE-4"], ["PAGE-3", "PAGE-2", "PAGE-1"], ["PAGE-0"]]
    for never_given in ("0", "999999999"):  # no page stops at 0, nor beyond the log
        answer = await citizens.read(token, f"?cursor={never_given}")
        assert (answer.status, answer.json()["code"]) == (400, "invalid_request"), never_given
    assert [e["case_ref"] for e in await everything(citizens, token, limit=100)] == [f"PAGE-{i}" for i in
                                                                                      range(6, -1, -1)]
    reads = [e for _, e in citizens.log() if e["path"] == PATH and e["status"] == 200]
    assert len(reads) == 7 + len(pages) + 1, "every read is logged"


async def test_the_log_entry_of_a_read_holds_the_pseudonym_never_the_identifiers(citizens: CitizenStack) -> None:
    stack, idp = citizens.stack, citizens.idp
    a = stack.population.fixture("salaried_parent").father
    assert a.cin is not None
    answer = await citizens.read(idp.token(a.idcs, a.cin))
    assert answer.status == 200
    refused = await citizens.read(idp.token(a.idcs, a.cin, iss="https://elsewhere.example"))
    assert refused.status == 401
    raw_read, read = next((raw, e) for raw, e in citizens.log() if e["request_id"] == answer.headers["X-Request-Id"])
    assert (read["method"], read["path"], read["client"], read["outcome"], read["status"]) == (
        "GET", PATH, "citizen", "citizen_access_log_read", 200)
    assert read["subject"] == citizens.pseudonymiser.pseudonym("idcs", a.idcs)
    raw_refusal, refusal = next((raw, e) for raw, e in citizens.log()
                                if e["request_id"] == refused.headers["X-Request-Id"])
    assert (refusal["outcome"], refusal["status"], refusal["subject"]) == ("citizen_token_invalid", 401, None)
    assert refusal["detail"]["reason"] == "the token comes from another issuer"
    for raw in (raw_read, raw_refusal):
        for identifier in (a.idcs, a.cin, "eyJ"):  # nor the token
            assert identifier.encode() not in raw


async def test_entries_under_the_cin_pseudonym_need_the_cin_claim(citizens: CitizenStack) -> None:
    stack, idp = citizens.stack, citizens.idp
    a = stack.population.fixture("amo_tadamon").father
    assert a.cin is not None
    stack.simulators.controls["civil_registry"].fail = True  # the CIN cannot be resolved: logged under its pseudonym
    assert (await stack.client.verify({"cin": a.cin}, ASD, "CASE-CIN")).status == 200
    stack.simulators.controls["civil_registry"].fail = False
    assert [e["case_ref"] for e in page(await citizens.read(idp.token(a.idcs, a.cin)))["entries"]] == ["CASE-CIN"]
    assert page(await citizens.read(idp.token(a.idcs)))["entries"] == []


async def test_every_token_defect_is_a_logged_401(citizens: CitizenStack, tmp_path: Path) -> None:
    idp = citizens.idp
    before = len(citizens.log())
    defects = _defects(idp, tmp_path)
    for name, (token, says) in defects.items():
        answer = await citizens.read(token)
        if len(token) > citizens.stack.settings.max_header_bytes:  # stopped before: any header that large
            check_problem(answer, 431, "headers_too_large", "get", PATH)
            continue
        problem = check_problem(answer, 401, "citizen_token_invalid", "get", PATH)
        assert says in problem["detail"], name
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="anss-gateway-citizens", error="invalid_token"'
    missing = await citizens.read(None)
    check_problem(missing, 401, "citizen_token_invalid", "get", PATH)
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="anss-gateway-citizens"'
    logged = citizens.log()[before:]
    assert len(logged) == len(defects) + 1
    assert all(e["subject"] is None and e["detail"]["reason"] for _, e in logged)
    invalid = [e for _, e in logged if (e["outcome"], e["client"]) == ("citizen_token_invalid", "citizen")]
    assert len(invalid) == (len(defects) - 1) + 1, "every defect but the oversized header (431), and no token"


@pytest.mark.parametrize("query", ["?limit=0", "?limit=101", "?limit=x", "?cursor=abc", "?cursor=0", "?page=2",
                                   "?limit=2&limit=3", "?cursor=" + "9" * 19, "?cursor=01"])
async def test_bad_query_parameters_are_400(citizens: CitizenStack, query: str) -> None:
    answer = await citizens.read(citizens.idp.token("1234567890"), query)
    check_problem(answer, 400, "invalid_request", "get", PATH)


async def test_a_client_assertion_is_not_a_citizen_token(citizens: CitizenStack) -> None:
    from gateway.client import client_assertion

    stack = citizens.stack
    token = client_assertion(stack.client.key, "anss.asd", stack.settings.gateway_id, "GET", PATH, b"")
    check_problem(await citizens.read(token), 401, "citizen_token_invalid", "get", PATH)


async def test_a_token_stops_working_when_it_expires(citizens: CitizenStack) -> None:
    now = int(time.time())  # (whole seconds: a margin of a few, so a slow second does not cross the line)
    token = citizens.idp.token("1234567890", iat=now - 60, nbf=now - 60, exp=now - 25)  # inside the 30 s leeway
    assert (await citizens.read(token)).status == 200
    stale = citizens.idp.token("1234567890", iat=now - 120, nbf=now - 120, exp=now - 35)
    assert (await citizens.read(stale)).status == 401


async def test_the_gateway_does_not_start_with_an_unusable_jwks(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "state")
    private = tmp_path / "private.json"
    private.write_text('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA", "d": "AA", "kid": "k"}]}')
    for path, says in ((tmp_path / "missing.json", "No such file"), (private, "private or secret key material")):
        broken = replace(settings, citizens=replace(settings.citizens, jwks_file=path))
        with pytest.raises(ConfigError, match=says) as info:
            async with gateway_running(broken, port=0):
                pass
        assert str(path) in str(info.value) and "[citizens] jwks_file" in str(info.value)


async def test_trying_it_in_development_with_the_dev_identity_provider(tmp_path: Path) -> None:
    """As docs/citizens.md tells a newcomer: no jwks_file, a token from `anss-gateway citizen token`."""
    async with build_stack(tmp_path) as stack:
        assert devidp.uses_dev_provider(stack.settings)
        father = stack.population.fixture("salaried_parent").father
        assert (await stack.client.verify({"idcs": father.idcs}, ASD, "DEV-1", ["identity"])).status == 200
        token = devidp.mint(stack.settings, father.idcs)
        async with aiohttp.ClientSession() as session, session.get(
            stack.gateway.url + PATH, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200
            document = await resp.json()
    assert [e["case_ref"] for e in document["entries"]] == ["DEV-1"]


async def test_each_citizen_has_their_own_rate_limit(tmp_path: Path) -> None:
    (tmp_path / "idp").mkdir()
    idp = IdentityProvider.create(tmp_path / "idp")

    def slow(settings: Settings) -> Settings:
        return replace(trusting(idp)(settings), default_rate_limit=RateLimit(0.01, 2))

    async with build_stack(tmp_path, slow) as stack:
        citizens = CitizenStack(stack, idp)
        one, two = idp.token("1234567890"), idp.token("1234567891")
        assert [(await citizens.read(one)).status for _ in range(2)] == [200, 200]
        limited = await citizens.read(one)
        check_problem(limited, 429, "rate_limited")  # (the OpenAPI helper reads integer headers as strings)
        assert int(limited.headers["Retry-After"]) >= 1 and limited.headers["RateLimit-Limit"] == "2"
        assert (await citizens.read(two)).status == 200, "another citizen has their own budget"


async def test_a_refused_query_shows_the_data_it_asked_for(citizens: CitizenStack) -> None:
    """Refused before its legal basis was known (a purpose the client has no right to): no legal basis, but the
    citizen still reads which of their data was asked for."""
    stack = citizens.stack
    a = stack.population.fixture("salaried_parent").father
    refused = await stack.client.verify({"idcs": a.idcs}, AMO, "DOSSIER-NOPE", ["identity", "employment"])
    assert refused.status == 403, refused.body
    (entry,) = page(await citizens.read(citizens.idp.token(a.idcs)))["entries"]
    assert (entry["case_ref"], entry["legal_basis"], entry["outcome"]) == ("DOSSIER-NOPE", None, "refused")
    assert entry["data"] == ["Identité et état civil", "Emploi et déclarations de salaire"]
