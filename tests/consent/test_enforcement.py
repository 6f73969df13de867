"""A consent-based purpose needs a consent in force: each refusal is precise, logged, and contacts no one.

Real gateway, real simulators (``tests/gateway/conftest.py``). Every refusal below asserts that the four
administrations received no call, and reads the refusal's entry from the access log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.client import Answer, GatewayClient
from gateway.policy.consent import ConsentGrant, SqliteConsentStore
from gateway.web.state import RUNTIME
from tests.consent.conftest import GRANTEE, OTHER, PURPOSE, SECOND_PURPOSE, calls, last_entry
from tests.gateway.conftest import Stack
from tests.gateway.test_openapi import check_problem, check_verification

CHECKS = ["identity", "household"]


def idcs_of(stack: Stack, fixture: str = "salaried_parent") -> str:
    return stack.population.fixture(fixture).father.idcs


def soon(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def grant(client: GatewayClient, idcs: str, *, grantee: str = GRANTEE, purpose: str = PURPOSE,
                checks: list[str] | None = None, **window: str) -> dict[str, Any]:
    document = {"subject": {"idcs": idcs}, "grantee": grantee, "purpose": purpose, "checks": checks or CHECKS,
                "valid_until": window.get("valid_until", soon(days=30)),
                "evidence": {"kind": "document", "id": "ASD-12/2026-123"}}
    if "valid_from" in window:
        document["valid_from"] = window["valid_from"]
    answer = await client.request("POST", "/v1/consents", document)
    assert answer.status == 201, answer.body
    consent: dict[str, Any] = answer.json()
    return consent


async def verify(client: GatewayClient, idcs: str, purpose: str = PURPOSE,
                 checks: list[str] | None = None) -> Answer:
    return await client.verify({"idcs": idcs}, purpose, "HOUSING-2026-7", CHECKS if checks is None else checks)


async def assert_refused(stack: Stack, client: GatewayClient, code: str, consent_id: str | None, *,
                         idcs: str | None = None, purpose: str = PURPOSE, checks: list[str] | None = None,
                         status: int = 403) -> dict[str, Any]:
    """Refused with ``code`` before any administration was contacted; the entry says so."""
    before = calls(stack)
    answer = await verify(client, idcs or idcs_of(stack), purpose, checks)
    problem = check_problem(answer, status, code, "post", "/v1/verifications")
    assert calls(stack) == before, "no administration is contacted for a refused request"
    entry = last_entry(stack)
    assert (entry["request_id"], entry["status"], entry["outcome"]) == (problem["request_id"], status, code)
    assert (entry["client"], entry["purpose"], entry["legal_basis"]) == (client.client_id, purpose, "consent")
    assert entry["sources"] == [] and entry.get("consent_id") == consent_id
    assert entry["detail"]["reason"] == problem["detail"]
    return problem


async def test_no_consent_is_consent_missing(cstack: Stack) -> None:
    async with cstack.client_for(GRANTEE) as housing:
        problem = await assert_refused(cstack, housing, "consent_missing", None)
    assert "consent" in problem["detail"]


async def test_granted_used_revoked_then_refused(cstack: Stack) -> None:
    idcs = idcs_of(cstack)
    async with cstack.client_for(GRANTEE) as housing:
        consent = await grant(housing, idcs)
        before = calls(cstack)
        answer = await verify(housing, idcs)
        document = check_verification(answer)
        assert list(document["checks"]) == CHECKS and document["legal_basis"] == "consent"
        assert calls(cstack) > before
        entry = last_entry(cstack)
        assert (entry["outcome"], entry["consent_id"], entry["legal_basis"]) == (
            "answered", consent["consent_id"], "consent")

        revoked = await housing.request("POST", f"/v1/consents/{consent['consent_id']}/revoke",
                                        {"reason": "withdrawn by the citizen, letter 2026/456"})
        assert revoked.status == 200 and revoked.json()["status"] == "revoked"
        problem = await assert_refused(cstack, housing, "consent_revoked", consent["consent_id"])
    assert consent["consent_id"] in problem["detail"]


async def test_an_expired_consent_is_consent_expired(cstack: Stack) -> None:
    """Recorded with a past window straight into the shared registry (as another replica would see it)."""
    idcs = idcs_of(cstack)
    runtime = cstack.gateway.runner.app[RUNTIME]
    store = SqliteConsentStore(cstack.settings.consent_store_path)
    await store.open()
    try:
        now = datetime.now(UTC)
        consent = await store.grant(ConsentGrant(
            citizen=runtime.pseudonymiser.pseudonym("idcs", idcs), grantee=GRANTEE, purpose=PURPOSE,
            checks=tuple(CHECKS), valid_from=now - timedelta(days=400), valid_until=now - timedelta(days=35),
            evidence="form ASD-12, file 2025/001", granted_by="cli:test"))
    finally:
        await store.close()
    async with cstack.client_for(GRANTEE) as housing:
        await assert_refused(cstack, housing, "consent_expired", consent.consent_id)


async def test_a_consent_not_yet_valid_is_refused(cstack: Stack) -> None:
    idcs = idcs_of(cstack)
    async with cstack.client_for(GRANTEE) as housing:
        consent = await grant(housing, idcs, valid_from=soon(days=2), valid_until=soon(days=60))
        assert consent["status"] == "active"
        await assert_refused(cstack, housing, "consent_not_yet_valid", consent["consent_id"])


async def test_a_consent_given_to_another_grantee_does_not_count(cstack: Stack) -> None:
    idcs = idcs_of(cstack)
    async with cstack.client_for(GRANTEE) as housing, cstack.client_for(OTHER) as other:
        await grant(housing, idcs, grantee=OTHER)
        await assert_refused(cstack, housing, "consent_missing", None)
        assert (await verify(other, idcs)).status == 200, "the grantee itself may query"


async def test_a_consent_for_another_purpose_does_not_count(cstack: Stack) -> None:
    idcs = idcs_of(cstack)
    async with cstack.client_for(GRANTEE) as housing:
        await grant(housing, idcs, purpose=SECOND_PURPOSE)
        await assert_refused(cstack, housing, "consent_missing", None)
        assert (await verify(housing, idcs, SECOND_PURPOSE)).status == 200


async def test_a_check_outside_the_consent_is_out_of_scope(cstack: Stack) -> None:
    idcs = idcs_of(cstack)
    async with cstack.client_for(GRANTEE) as housing:
        consent = await grant(housing, idcs, checks=["identity", "household"])
        problem = await assert_refused(cstack, housing, "consent_out_of_scope", consent["consent_id"],
                                       checks=["identity", "employment"])
        assert "employment" in problem["detail"]
        # by default a client asks for every check it has a right to: more than this consent covers
        await assert_refused(cstack, housing, "consent_out_of_scope", consent["consent_id"], checks=[])
        assert (await verify(housing, idcs, checks=["household"])).status == 200


async def test_a_statute_based_purpose_needs_no_consent(cstack: Stack) -> None:
    before = calls(cstack)
    document = check_verification(await cstack.client.verify({"idcs": idcs_of(cstack)}, "asd.eligibility",
                                                             "CASE-STATUTE", ["identity"]))
    assert document["legal_basis"].startswith("Loi n° 58-23") and calls(cstack) > before
    entry = last_entry(cstack)
    assert entry["outcome"] == "answered" and entry["legal_basis"].startswith("Loi n° 58-23")
    assert entry.get("consent_id") is None


async def test_a_cin_subject_on_a_consent_purpose_is_400(cstack: Stack) -> None:
    father = cstack.population.fixture("salaried_parent").father
    assert father.cin is not None
    async with cstack.client_for(GRANTEE) as housing:
        await grant(housing, father.idcs)  # even with a consent for the person behind the CIN
        before = calls(cstack)
        answer = await housing.verify({"cin": father.cin}, PURPOSE, "HOUSING-CIN", CHECKS)
    problem = check_problem(answer, 400, "invalid_request", "post", "/v1/verifications")
    assert problem["detail"] == "consent-based purposes take an IDCS subject"
    assert calls(cstack) == before
    entry = last_entry(cstack)
    assert entry["outcome"] == "invalid_request" and entry["sources"] == []


async def test_without_the_consent_registry_nothing_is_answered(cstack: Stack) -> None:
    async with cstack.client_for(GRANTEE) as housing:
        await grant(housing, idcs_of(cstack))
        await cstack.gateway.runner.app[RUNTIME].consents.close()
        before = calls(cstack)
        answer = await verify(housing, idcs_of(cstack))
    check_problem(answer, 503, "not_ready", "post", "/v1/verifications")
    assert calls(cstack) == before and last_entry(cstack)["outcome"] == "not_ready"
