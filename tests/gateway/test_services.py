"""Partner ministries exchanging data through the gateway: ``/v1/services`` end to end, on the real stack.

The two shipped ministry clients: the Ministry of National Education (``men.bourses``) checks a scholarship
applicant's parent's CNSS declarations, on the parent's consent; the Ministry of Health (``ms.deces``) checks a
death in the civil registry, under the civil-status statute. Real gateway, real simulators.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from joserfc import jws
from joserfc.jwk import KeySet
from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]
from openapi_spec_validator import validate as validate_openapi

from gateway.client import Answer, GatewayClient
from gateway.web.state import RUNTIME
from tests.consent.conftest import calls, last_entry
from tests.gateway.conftest import Stack
from tests.gateway.test_signatures import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
MEN, MS, ASD = "men.bourses", "ms.deces", "anss.asd"


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((ROOT / "schemas" / name).read_text(encoding="utf-8")))


async def call(client: GatewayClient, service: str, purpose: str, params: dict[str, str],
               case_ref: str = "FILE-2026-1") -> Answer:
    return await client.request("POST", f"/v1/services/{service}",
                                {"purpose": purpose, "case_ref": case_ref, "params": params})


async def grant(stack: Stack, client: GatewayClient, idcs: str, scope: list[str]) -> dict[str, Any]:
    answer = await client.request("POST", "/v1/consents", {
        "subject": {"idcs": idcs}, "grantee": client.client_id, "purpose": "men.scholarship", "checks": scope,
        "valid_until": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        "evidence": {"kind": "document", "id": "BS-7/2026-88"}})
    assert answer.status == 201, answer.body
    consent: dict[str, Any] = answer.json()
    return consent


async def test_each_ministry_lists_only_what_it_may_use(stack: Stack) -> None:
    catalogue = schema("service-catalogue.json")
    async with stack.client_for(MEN) as men, stack.client_for(MS) as ms:
        for client, expected in ((men, ["cnss.declarations"]), (ms, ["rnp.person"])):
            answer = await client.request("GET", "/v1/services")
            assert answer.status == 200, answer.body
            document = answer.json()
            catalogue.validate(document)
            assert [s["service"] for s in document["services"]] == expected
    async with stack.client_for(MEN) as men:
        entry = (await men.request("GET", "/v1/services")).json()["services"][0]
    assert entry["provider"] == "employment" and entry["record"] == "declarations"
    assert entry["purposes"] == [{"purpose": "men.scholarship", "title": entry["purposes"][0]["title"],
                                  "legal_basis": "consent", "withheld": ["employer_cnss"]}]
    assert [(p["name"], p["required"], p["identifier"]) for p in entry["params"]] == [
        ("idcs", True, True), ("from", True, False), ("to", True, False)]
    assert entry["record_schema"]["title"] == "Declarations record"
    async with stack.client_for(ASD) as asd:  # ANSS has verification rights, no service right
        answer = await asd.request("GET", "/v1/services")
    assert answer.status == 200 and answer.json() == {"services": []}


async def test_each_service_is_described_as_an_openapi_31_document(stack: Stack) -> None:
    async with stack.client_for(MS) as ms:
        answer = await ms.request("GET", "/v1/services/rnp.person")
        assert answer.status == 200, answer.body
        document = answer.json()
        validate_openapi(document)
        assert document["openapi"] == "3.1.0"
        operation = document["paths"]["/v1/services/rnp.person"]["post"]
        request_schema = document["components"]["schemas"]["ServiceCallRequest"]
        assert request_schema["properties"]["purpose"]["enum"] == ["ms.death-verification"]
        params = request_schema["properties"]["params"]
        assert sorted(params["properties"]) == ["cin", "idcs"] and params["oneOf"] == [
            {"required": ["idcs"]}, {"required": ["cin"]}]
        # every refusal the gateway's own document gives for this operation (docs/services.md: "every refusal")
        gateway_doc = json.loads((ROOT / "schemas" / "openapi.json").read_text(encoding="utf-8"))
        assert set(operation["responses"]) == set(gateway_doc["paths"]["/v1/services/{service}"]["post"]["responses"])
        for status, response in operation["responses"].items():  # every answer is signed, refusals included
            headers = response["headers"]
            assert set(headers) == {"X-JWS-Signature", "X-Request-Id", "Log-Checkpoint"}, status
            assert headers["X-JWS-Signature"]["required"] and headers["X-Request-Id"]["required"], status
        info = document["info"]["x-purposes"][0]
        assert info["legal_basis"] == "statute" and "36-21" in info["statute"]
        # another ministry's service is not even described to it
        answer = await ms.request("GET", "/v1/services/cnss.declarations")
        assert answer.status == 404 and answer.json()["code"] == "service_not_found"
        # services.md section 2's order: a service one has no right to is not disclosed, whatever the body
        answer = await ms.request("POST", "/v1/services/cnss.declarations", body=b"[")
        assert answer.status == 404 and answer.json()["code"] == "service_not_found"
        answer = await call(ms, "rnp.person", "no.such-purpose", {"idcs": "1234567890"})
        assert answer.status == 400 and answer.json()["code"] == "unknown_purpose"
        refused = await call(ms, "rnp.person", "ms.death-verification", {"idcs": "12"})
        assert refused.status == 400 and refused.signature_header is not None
        assert refused.headers["X-Request-Id"] == refused.json()["request_id"]

        # the record in a real answer validates against the record schema the document gives
        deceased = stack.population.fixture("deceased_father").father
        answer = await call(ms, "rnp.person", "ms.death-verification", {"idcs": deceased.idcs})
        assert answer.status == 200, answer.body
        components = document["components"]["schemas"]
        validator = Draft202012Validator({"$ref": "#/components/schemas/ServiceCallResponse",
                                          "components": {"schemas": components}})
        validator.validate(answer.json())


async def test_the_ministry_of_health_checks_a_death(stack: Stack) -> None:
    father = stack.population.fixture("deceased_father").father
    assert not father.alive and father.death_date is not None
    async with stack.client_for(MS) as ms:
        before = stack.simulators.controls["civil_registry"].calls
        answer = await call(ms, "rnp.person", "ms.death-verification", {"idcs": father.idcs}, "DECES-CHU-2026-41")
        assert answer.status == 200, answer.body
        assert answer.signature_header is not None
        body = answer.json()
        schema("service-call-response.json").validate(body)
        assert stack.simulators.controls["civil_registry"].calls == before + 1
    record = body["record"]
    assert (body["found"], body["provider"], body["source"]["status"]) == (True, "civil_registry", "ok")
    assert (record["alive"], record["death_date"]) == (False, father.death_date.isoformat())
    assert record["last_name"] == father.last_name
    assert sorted(body["withheld"]) == ["father_idcs", "first_name_ar", "last_name_ar", "mother_idcs"]
    assert not set(body["withheld"]) & set(record)
    assert body["legal_basis"] == "Loi n° 36-21 relative à l'état civil"

    entry = last_entry(stack)
    raw = json.dumps(entry, ensure_ascii=False)
    assert father.idcs not in raw and father.last_name not in raw and father.first_name not in raw
    assert entry["subject"] == stack.gateway.runner.app[RUNTIME].pseudonymiser.pseudonym("idcs", father.idcs)
    assert (entry["client"], entry["purpose"], entry["outcome"]) == (MS, "ms.death-verification", "answered")
    assert entry["detail"]["service"] == "rnp.person"
    assert entry["sources"] == [{"name": "civil_registry", "status": "ok"}]
    # the record validates against the catalogue's record schema, which requires nothing withheld
    async with stack.client_for(MS) as ms:
        listed = (await ms.request("GET", "/v1/services")).json()["services"][0]
    assert not set(listed["record_schema"]["required"]) & set(listed["purposes"][0]["withheld"])
    Draft202012Validator(listed["record_schema"]).validate(body["record"])


async def test_the_answer_verifies_with_an_independent_jose_library(stack: Stack) -> None:
    async with stack.client_for(MS) as ms:
        async with ms.session.get(stack.gateway.url + "/.well-known/jwks.json") as resp:
            key_set = KeySet.import_key_set(await resp.json(content_type=None))
        answer = await call(ms, "rnp.person", "ms.death-verification",
                            {"cin": stack.population.fixture("deceased_father").mother.cin or ""})
    assert answer.status == 200, answer.body
    token = answer.headers["X-JWS-Signature"]
    verified = jws.deserialize_compact(token, key_set, algorithms=["EdDSA"], registry=REGISTRY, payload=answer.body)
    assert verified.protected["request_id"] == answer.json()["request_id"]


async def test_a_subject_the_registry_does_not_know_is_found_false(stack: Stack) -> None:
    async with stack.client_for(MS) as ms:
        answer = await call(ms, "rnp.person", "ms.death-verification", {"idcs": stack.population.unknown_idcs()})
    assert answer.status == 200, answer.body
    body = answer.json()
    assert (body["found"], body["record"], body["source"]["status"]) == (False, None, "not_found")
    assert last_entry(stack)["outcome"] == "not_found"


async def test_denied_calls_are_refused_with_stable_codes_before_any_call(stack: Stack) -> None:
    idcs = stack.population.fixture("salaried_parent").father.idcs
    async with stack.client_for(MS) as ms, stack.client_for(MEN) as men:
        before = calls(stack)
        answer = await call(ms, "cnss.declarations", "ms.death-verification", {"idcs": idcs, "from": "2026-01",
                                                                               "to": "2026-06"})
        assert (answer.status, answer.json()["code"]) == (404, "service_not_found")
        answer = await call(ms, "rnp.person", "men.scholarship", {"idcs": idcs})
        assert (answer.status, answer.json()["code"]) == (403, "forbidden_service")
        entry = last_entry(stack)
        assert (entry["status"], entry["outcome"], entry["client"]) == (403, "forbidden_service", MS)
        answer = await call(ms, "rnp.person", "ms.death-verification", {"idcs": idcs, "cin": "AB123456"})
        assert (answer.status, answer.json()["code"]) == (400, "invalid_request")
        answer = await call(ms, "rnp.person", "ms.death-verification", {"idcs": "12345"})
        assert (answer.status, answer.json()["code"]) == (400, "invalid_request")
        answer = await call(men, "cnss.declarations", "men.scholarship", {"idcs": idcs, "from": "2026-01"})
        assert (answer.status, answer.json()["code"]) == (400, "invalid_request")
        assert calls(stack) == before, "no administration is contacted for a refused call"


async def test_a_consent_based_service_needs_the_consent_before_any_call(stack: Stack) -> None:
    parent = stack.population.fixture("salaried_parent").father
    params = {"idcs": parent.idcs, "from": "2026-01", "to": "2026-06"}
    async with stack.client_for(MEN) as men:
        before = calls(stack)
        answer = await call(men, "cnss.declarations", "men.scholarship", params)
        assert (answer.status, answer.json()["code"]) == (403, "consent_missing")
        assert calls(stack) == before
        entry = last_entry(stack)
        assert (entry["outcome"], entry["legal_basis"], entry["sources"]) == ("consent_missing", "consent", [])

        consent = await grant(stack, men, parent.idcs, ["cnss.declarations"])
        answer = await call(men, "cnss.declarations", "men.scholarship", params)
        assert answer.status == 200, answer.body
        body = answer.json()
        assert stack.simulators.controls["employment"].calls == 1
    assert body["found"] is True and body["withheld"] == ["employer_cnss"]
    assert "employer_cnss" not in body["record"] and body["record"]["employer"]
    assert all(set(m) == {"month", "days", "salary_mad"} for m in body["record"]["months"])
    entry = last_entry(stack)
    assert entry["consent_id"] == consent["consent_id"] and entry["detail"]["withheld"] == ["employer_cnss"]
    assert parent.idcs not in json.dumps(entry)


async def test_parameters_the_administration_refuses_are_the_callers_400_and_trip_no_breaker(stack: Stack) -> None:
    """The employment registry refuses a period that ends before it starts (HTTP 400): that is the caller's
    mistake, a 400 for it, and not a failure of the administration — however many, its breaker stays closed
    and every other client's calls go on."""
    parent = stack.population.fixture("salaried_parent").father
    async with stack.client_for(MEN) as men:
        await grant(stack, men, parent.idcs, ["cnss.declarations"])
        before = stack.simulators.controls["employment"].calls
        for _ in range(30):
            answer = await call(men, "cnss.declarations", "men.scholarship",
                                {"idcs": parent.idcs, "from": "2026-06", "to": "2026-01"})
            assert (answer.status, answer.json()["code"]) == (400, "invalid_request"), answer.body
            assert "administration refused" in answer.json()["detail"]
        assert stack.simulators.controls["employment"].calls == before + 30, "each one reached it"
        assert last_entry(stack)["sources"] == [{"name": "employment", "status": "rejected"}]
        answer = await call(men, "cnss.declarations", "men.scholarship",
                            {"idcs": parent.idcs, "from": "2026-01", "to": "2026-06"})
        assert answer.status == 200, answer.body
    answer = await stack.client.verify({"idcs": parent.idcs}, "asd.eligibility", "ASD-AFTER", ["employment"])
    assert answer.status == 200 and answer.json()["checks"]["employment"]["status"] == "verified"


async def test_a_failing_administration_is_a_problem_with_its_stable_code(stack: Stack) -> None:
    stack.simulators.controls["civil_registry"].rogue = "soap_fault"
    async with stack.client_for(MS) as ms:
        answer = await call(ms, "rnp.person", "ms.death-verification",
                            {"idcs": stack.population.fixture("deceased_father").father.idcs})
    assert (answer.status, answer.headers["Content-Type"]) == (502, "application/problem+json")
    problem = answer.json()
    assert problem["code"] == "source_fault" and "<" not in problem["detail"]
    assert last_entry(stack)["sources"] == [{"name": "civil_registry", "status": "unavailable"}]


async def test_an_administration_that_does_not_answer_in_time_is_a_504(stack: Stack) -> None:
    stack.simulators.controls["civil_registry"].rogue = "late"
    async with stack.client_for(MS) as ms:
        answer = await call(ms, "rnp.person", "ms.death-verification",
                            {"idcs": stack.population.fixture("deceased_father").father.idcs})
    assert (answer.status, answer.json()["code"]) == (504, "source_timeout")
    assert last_entry(stack)["sources"] == [{"name": "civil_registry", "status": "timeout"}]
