"""Role separation on a real gateway, both ways: an officer cannot query citizen data nor manage consents,
a data client cannot read the access log. Each refusal is 403 ``forbidden_role``, signed, and logged like every
refusal — and a refused verification contacts no administration."""

from __future__ import annotations

from gateway.client import GatewayClient
from tests.gateway.conftest import Stack
from tests.officers.conftest import OFFICER, calls, stored_entries

PURPOSE = "asd.eligibility"


def assert_refused(answer_status: int, document: dict[str, object]) -> None:
    assert answer_status == 403, document
    assert document["code"] == "forbidden_role"


async def test_an_officer_cannot_query_citizen_data(stack: Stack, officer: GatewayClient) -> None:
    idcs = stack.population.fixture("amo_tadamon").father.idcs
    before = calls(stack)
    answer = await officer.verify({"idcs": idcs}, PURPOSE, "CASE-OFFICER-1")
    assert_refused(answer.status, answer.json())
    assert "cannot query citizen data" in answer.json()["detail"]
    assert answer.signature_header is not None, "the refusal is signed and bound to the question"
    assert calls(stack) == before, "no administration is contacted"
    entry = stored_entries(stack)[-1]
    assert (entry["client"], entry["path"], entry["status"], entry["outcome"]) == \
        (OFFICER, "/v1/verifications", 403, "forbidden_role")
    assert "cannot query citizen data" in entry["detail"]["reason"]
    assert idcs not in str(entry)


async def test_an_officer_cannot_manage_consents(stack: Stack, officer: GatewayClient) -> None:
    idcs = stack.population.fixture("amo_tadamon").father.idcs
    grant = {"subject": {"idcs": idcs}, "grantee": "mhpv.housing", "purpose": "partner.social-housing",
             "checks": ["identity"], "valid_until": "2099-01-01T00:00:00Z",
             "evidence": {"kind": "document", "id": "form-12"}}
    for method, path, document in (("POST", "/v1/consents", grant), ("GET", f"/v1/consents?idcs={idcs}", None),
                                   ("GET", "/v1/consents/c0nsent", None),
                                   ("POST", "/v1/consents/c0nsent/revoke", {"reason": "test"})):
        answer = await officer.request(method, path, document)
        assert_refused(answer.status, answer.json())
        entry = stored_entries(stack)[-1]
        assert (entry["client"], entry["outcome"]) == (OFFICER, "forbidden_role"), path


async def test_a_data_client_still_queries(stack: Stack) -> None:
    idcs = stack.population.fixture("amo_tadamon").father.idcs
    answer = await stack.client.verify({"idcs": idcs}, PURPOSE, "CASE-DATA-1")
    assert answer.status == 200, answer.body
