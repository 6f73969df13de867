"""``/v1/consents`` on a real gateway: the contract, who may use it, what it refuses, what it logs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from gateway.client import Answer, GatewayClient
from tests.consent.conftest import GRANTEE, OFFICE, OTHER, PURPOSE, SECOND_PURPOSE, entries, last_entry
from tests.gateway.conftest import Stack
from tests.gateway.test_openapi import SCHEMAS, assert_valid, check_against_openapi, check_problem

CONSENTS = "/v1/consents"
ONE = "/v1/consents/{consent_id}"
REVOKE = "/v1/consents/{consent_id}/revoke"
EVIDENCE = {"kind": "document", "id": "ASD-12/2026-123"}


def later(days: float = 30) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def request_for(idcs: str, **over: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"subject": {"idcs": idcs}, "grantee": GRANTEE, "purpose": PURPOSE,
                                "checks": ["identity", "household"], "valid_until": later(), "evidence": EVIDENCE}
    document.update(over)
    return {k: v for k, v in document.items() if v is not None}


def checked(answer: Answer, method: str, path: str, status: int) -> Any:
    assert answer.status == status, answer.body
    assert answer.signature_header is not None, "every answer is signed and bound to its question"
    document = check_against_openapi(answer, method, path)
    if path != CONSENTS or method == "post":
        assert_valid((SCHEMAS / "consent.json").as_uri(), document)
    return document


async def granted(client: GatewayClient, idcs: str, **over: Any) -> dict[str, Any]:
    answer = await client.request("POST", CONSENTS, request_for(idcs, **over))
    consent: dict[str, Any] = checked(answer, "post", CONSENTS, 201)
    return consent


def idcs_of(stack: Stack, fixture: str = "amo_tadamon") -> str:
    return stack.population.fixture(fixture).father.idcs


async def test_grant_list_show_revoke(cstack: Stack) -> None:
    idcs = idcs_of(cstack)
    async with cstack.client_for(GRANTEE) as housing:
        answer = await housing.request("POST", CONSENTS, request_for(idcs, valid_from="2026-01-01T00:00:00+01:00"))
        consent = checked(answer, "post", CONSENTS, 201)
        consent_id = consent["consent_id"]
        assert answer.headers["Location"] == f"/v1/consents/{consent_id}"
        assert {k: consent[k] for k in ("grantee", "purpose", "checks", "evidence", "status", "granted_by")} == {
            "grantee": GRANTEE, "purpose": PURPOSE, "checks": ["identity", "household"], "evidence": EVIDENCE,
            "status": "active", "granted_by": GRANTEE}
        assert consent["valid_from"] == "2025-12-31T23:00:00.000000+00:00"
        assert len(consent["citizen"]) == 64 and idcs not in answer.body.decode()
        assert consent["revoked_at"] is None

        listed = checked(await housing.request("GET", f"{CONSENTS}?idcs={idcs}"), "get", CONSENTS, 200)
        assert listed == {"consents": [consent]}
        other = checked(await housing.request("GET", f"{CONSENTS}?idcs={idcs_of(cstack, 'disabled_child')}"),
                        "get", CONSENTS, 200)
        assert other == {"consents": []}
        shown = checked(await housing.request("GET", f"{CONSENTS}/{consent_id}"), "get", ONE, 200)
        assert shown == consent

        reason = "withdrawn by the citizen at the Rabat office, letter 2026/456"
        revoked = checked(await housing.request("POST", f"{CONSENTS}/{consent_id}/revoke", {"reason": reason}),
                          "post", REVOKE, 200)
        assert (revoked["status"], revoked["revoked_reason"], revoked["revoked_by"]) == ("revoked", reason, GRANTEE)
        again = checked(await housing.request("POST", f"{CONSENTS}/{consent_id}/revoke", {"reason": "twice"}),
                        "post", REVOKE, 200)
        assert again == revoked, "the first revocation stands"

    logged = entries(cstack)
    assert [(e["method"], e["path"], e["status"], e["outcome"]) for e in logged] == [
        ("POST", CONSENTS, 201, "consent_granted"),
        ("GET", CONSENTS, 200, "consents_listed"),
        ("GET", CONSENTS, 200, "consents_listed"),
        ("GET", f"{CONSENTS}/{consent_id}", 200, "consent_shown"),
        ("POST", f"{CONSENTS}/{consent_id}/revoke", 200, "consent_revoked"),
        ("POST", f"{CONSENTS}/{consent_id}/revoke", 200, "consent_already_revoked"),
    ]
    for entry in (logged[0], logged[3], logged[4], logged[5]):
        assert (entry["client"], entry["purpose"], entry["subject"], entry["consent_id"]) == (
            GRANTEE, PURPOSE, consent["citizen"], consent_id)
        assert entry["checks"] == ["identity", "household"] and entry["sources"] == []
    assert logged[0]["detail"]["grantee"] == GRANTEE
    assert logged[1]["subject"] == consent["citizen"] and logged[1]["detail"]["count"] == 1
    for name in ("audit_database", "consent_store_path"):
        path = getattr(cstack.settings, name)
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert idcs.encode() not in raw, f"the identifier reached {path.name}"
    audit = b"".join(p.read_bytes() for p in cstack.settings.audit_database.parent.glob("access-log*"))
    assert EVIDENCE["id"].encode() not in audit and reason.encode() not in audit


@pytest.mark.parametrize("client_id", ["anss.asd", OTHER])
async def test_a_client_that_manages_no_consents_gets_403(cstack: Stack, client_id: str) -> None:
    idcs = idcs_of(cstack)
    async with cstack.client_for(GRANTEE) as housing:
        consent = await granted(housing, idcs)
    async with cstack.client_for(client_id) as client:
        for method, path, template, body in [
            ("POST", CONSENTS, CONSENTS, request_for(idcs)),
            ("GET", f"{CONSENTS}?idcs={idcs}", CONSENTS, None),
            ("GET", f"{CONSENTS}/{consent['consent_id']}", ONE, None),
            ("POST", f"{CONSENTS}/{consent['consent_id']}/revoke", REVOKE, {"reason": "not mine to revoke"}),
        ]:
            answer = await client.request(method, path, body)
            problem = check_problem(answer, 403, "forbidden_purpose", method.lower(), template)
            assert "may not manage consents" in problem["detail"]
            entry = last_entry(cstack)
            assert (entry["client"], entry["outcome"], entry["status"]) == (client_id, "forbidden_purpose", 403)
    async with cstack.client_for(GRANTEE) as housing:
        shown = checked(await housing.request("GET", f"{CONSENTS}/{consent['consent_id']}"), "get", ONE, 200)
    assert shown["status"] == "active", "nothing was revoked"


async def test_a_manager_sees_only_the_consents_of_its_purposes(cstack: Stack) -> None:
    idcs = idcs_of(cstack)
    async with cstack.client_for(GRANTEE) as housing, cstack.client_for(OFFICE) as office:
        housing_consent = await granted(housing, idcs)
        second = await granted(housing, idcs, purpose=SECOND_PURPOSE)
        by_office = await granted(office, idcs, purpose=SECOND_PURPOSE, checks=["identity"])
        assert by_office["granted_by"] == OFFICE and by_office["grantee"] == GRANTEE

        listed = checked(await office.request("GET", f"{CONSENTS}?idcs={idcs}"), "get", CONSENTS, 200)
        assert [c["consent_id"] for c in listed["consents"]] == [second["consent_id"], by_office["consent_id"]]
        mine = checked(await housing.request("GET", f"{CONSENTS}?idcs={idcs}"), "get", CONSENTS, 200)
        assert len(mine["consents"]) == 3

        hidden = housing_consent["consent_id"]
        check_problem(await office.request("GET", f"{CONSENTS}/{hidden}"), 404, "not_found", "get", ONE)
        check_problem(await office.request("POST", f"{CONSENTS}/{hidden}/revoke", {"reason": "x"}), 404,
                      "not_found", "post", REVOKE)
        refused = await office.request("POST", CONSENTS, request_for(idcs))
        check_problem(refused, 403, "forbidden_purpose", "post", CONSENTS)
        assert last_entry(cstack)["purpose"] == PURPOSE


def _bad_grants(idcs: str) -> dict[str, tuple[dict[str, Any] | bytes, str]]:
    now = datetime.now(UTC)
    return {
        "bad idcs": (request_for("12345"), "invalid_request"),
        "a cin": (request_for(idcs, subject={"cin": "BE123456"}), "invalid_request"),
        "no evidence": (request_for(idcs, evidence=None), "invalid_request"),
        "evidence too long": (request_for(idcs, evidence="x" * 201), "invalid_request"),
        "blank evidence": (request_for(idcs, evidence="   "), "invalid_request"),
        "evidence with a line break": (request_for(idcs, evidence="form\nASD-12"), "invalid_request"),
        "evidence as free text": (request_for(idcs, evidence="form ASD-12 signed at the Rabat office"),
                                  "invalid_request"),
        "evidence over http": (request_for(idcs, evidence="http://docs.example/consents/12"), "invalid_request"),
        "evidence of another kind": (request_for(idcs, evidence={"kind": "photo", "id": "x"}), "invalid_request"),
        "evidence with another member": (request_for(idcs, evidence={**EVIDENCE, "page": "2"}), "invalid_request"),
        "evidence id with a space": (request_for(idcs, evidence={"kind": "document", "id": "Fatima Zahra"}),
                                     "invalid_request"),
        "evidence URL with a password": (request_for(idcs, evidence="https://a:b@docs.example/c/1"),
                                         "invalid_request"),
        "evidence holding an IDCS": (request_for(idcs, evidence={"kind": "document", "id": f"file-{idcs}"}),
                                     "evidence_personal_data"),
        "evidence URL holding an IDCS": (request_for(idcs, evidence=f"https://docs.example/c/{idcs}.pdf"),
                                         "evidence_personal_data"),
        "evidence holding a CIN": (request_for(idcs, evidence={"kind": "document", "id": "BE123456"}),
                                   "evidence_personal_data"),
        "evidence URL holding a CIN": (request_for(idcs, evidence="https://docs.example/c?holder_id=jt170619"),
                                       "evidence_personal_data"),
        "evidence URL holding an escaped IDCS": (request_for(idcs, evidence=f"https://docs.example/c/{idcs[:-1]}%3"
                                                                            f"{idcs[-1]}.pdf"),
                                                 "evidence_personal_data"),
        "evidence with a name field": (request_for(idcs, evidence={**EVIDENCE, "name": "Fatima Zahra"}),
                                       "evidence_personal_data"),
        "evidence with a nom field": (request_for(idcs, evidence={**EVIDENCE, "Nom": "Alaoui"}),
                                      "evidence_personal_data"),
        "evidence URL with a name field": (request_for(idcs, evidence="https://docs.example/c/1?first_name=Ali"),
                                           "evidence_personal_data"),
        "no checks": (request_for(idcs, checks=[]), "invalid_request"),
        "unknown check": (request_for(idcs, checks=["credit_score"]), "invalid_request"),
        "check the grantee may not run": (request_for(idcs, checks=["schooling"]), "invalid_request"),
        "unknown grantee": (request_for(idcs, grantee="nobody.at.all"), "invalid_request"),
        "grantee without a right": (request_for(idcs, grantee="anss.asd"), "invalid_request"),
        "statute purpose": (request_for(idcs, purpose="asd.eligibility"), "invalid_request"),
        "unknown purpose": (request_for(idcs, purpose="marketing"), "unknown_purpose"),
        "until in the past": (request_for(idcs, valid_until="2020-01-01T00:00:00Z"), "invalid_request"),
        "until before from": (request_for(idcs, valid_from=later(10), valid_until=later(5)), "invalid_request"),
        "no time zone": (request_for(idcs, valid_until=(now + timedelta(days=3)).replace(tzinfo=None).isoformat()),
                         "invalid_request"),
        "impossible date": (request_for(idcs, valid_until="2030-02-30T00:00:00Z"), "invalid_request"),
        "unknown member": (request_for(idcs, note="x"), "invalid_request"),
        "duplicate key": (b'{"evidence":"a","evidence":"b"}', "invalid_request"),
        "not json": (b"{consent", "invalid_request"),
        "from before year 1 in UTC": (request_for(idcs, valid_from="0001-01-01T00:00:00+01:00"), "invalid_request"),
        "until after year 9999 in UTC": (request_for(idcs, valid_until="9999-12-31T23:59:59-01:00"),
                                         "invalid_request"),
        "evidence with a lone surrogate": (orjson.dumps(request_for(idcs, evidence="form SURROGATE"))
                                           .replace(b"SURROGATE", b"\\ud800"), "invalid_request"),
        "grantee with a lone surrogate": (orjson.dumps(request_for(idcs, grantee="SURROGATE"))
                                          .replace(b"SURROGATE", b"\\udfff"), "invalid_request"),
    }


async def test_invalid_grants_are_400_and_record_nothing(cstack: Stack) -> None:
    idcs = idcs_of(cstack)
    async with cstack.client_for(GRANTEE) as housing:
        for name, (body, code) in _bad_grants(idcs).items():
            answer = await (housing.request("POST", CONSENTS, body=body) if isinstance(body, bytes)
                            else housing.request("POST", CONSENTS, body))
            assert answer.status == 400, (name, answer.body)
            problem = check_problem(answer, 400, code, "post", CONSENTS)
            assert idcs not in problem["detail"], name
            entry = last_entry(cstack)
            assert (entry["outcome"], entry["client"], entry.get("consent_id")) == (code, GRANTEE, None), name
        listed = checked(await housing.request("GET", f"{CONSENTS}?idcs={idcs}"), "get", CONSENTS, 200)
    assert listed == {"consents": []}


async def test_invalid_lookups_and_revocations(cstack: Stack) -> None:
    idcs = idcs_of(cstack)
    async with cstack.client_for(GRANTEE) as housing:
        consent = await granted(housing, idcs)
        revoke = f"{CONSENTS}/{consent['consent_id']}/revoke"
        for path in (CONSENTS, f"{CONSENTS}?idcs=12345", f"{CONSENTS}?idcs={idcs}&idcs={idcs}",
                     f"{CONSENTS}?idcs={idcs}&purpose={PURPOSE}", f"{CONSENTS}?cin=BE123456"):
            check_problem(await housing.request("GET", path), 400, "invalid_request", "get", CONSENTS)
        for consent_id in (str(uuid.uuid4()), "not-a-uuid", consent["consent_id"].upper()):
            check_problem(await housing.request("GET", f"{CONSENTS}/{consent_id}"), 404, "not_found", "get", ONE)
            check_problem(await housing.request("POST", f"{CONSENTS}/{consent_id}/revoke", {"reason": "x"}), 404,
                          "not_found", "post", REVOKE)
        for body in ({}, {"reason": ""}, {"reason": "  "}, {"reason": "x" * 201}, {"reason": "a\tb"},
                     {"reason": "x", "by": "me"}):
            check_problem(await housing.request("POST", revoke, body), 400, "invalid_request", "post", REVOKE)
        lone = b'{"reason": "moved \\ud83d away"}'  # half of a surrogate pair, escaped: valid JSON, not text
        check_problem(await housing.request("POST", revoke, body=lone), 400, "invalid_request", "post", REVOKE)
        check_problem(await housing.request("POST", revoke, {"reason": "x"}, headers={"Content-Type": "text/plain"}),
                      415, "unsupported_media_type", "post", REVOKE)
        shown = checked(await housing.request("GET", f"{CONSENTS}/{consent['consent_id']}"), "get", ONE, 200)
    assert shown["status"] == "active"


async def test_consent_requests_are_authenticated_once(cstack: Stack) -> None:
    """The same trust path as verifications: no assertion is 401, a replayed one too."""
    from tests.gateway.test_openapi import raw_request

    check_problem(await raw_request(cstack, "GET", f"{CONSENTS}?idcs={idcs_of(cstack)}"), 401, "unauthenticated",
                  "get", CONSENTS)
    body = orjson.dumps(request_for(idcs_of(cstack)))
    from gateway.client import client_assertion
    from gateway.crypto.keyring import dev_client_key_path
    from gateway.crypto.keys import load_or_create

    key = load_or_create(dev_client_key_path(cstack.settings.state_dir, GRANTEE))
    token = client_assertion(key, GRANTEE, cstack.settings.gateway_id, "POST", CONSENTS, body)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    first = await raw_request(cstack, "POST", CONSENTS, body, headers)
    assert first.status == 201
    check_problem(await raw_request(cstack, "POST", CONSENTS, body, headers), 401, "assertion_replayed", "post",
                  CONSENTS)
    assert [e["outcome"] for e in entries(cstack)][-2:] == ["consent_granted", "assertion_replayed"]
