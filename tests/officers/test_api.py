"""The officers' API on a real gateway in front of the four simulators, with real signed requests.

A small day of activity (answered verifications by IDCS and CIN, partial checks, refusals, an unknown
subject) is made through the gateway; then an officer searches it with every filter and compares with the log
as stored, pages to the end, looks a citizen up by identifier, opens entries with their proofs, verifies
the log now and exports it — and every answer follows the OpenAPI document.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.api.audit import decode_cursor, encode_cursor
from gateway.audit import merkle as m
from gateway.audit.offline import verify_export_lines
from gateway.client import GatewayClient
from gateway.crypto.keys import b64url_decode, public_from_jwk
from gateway.errors import BadRequest
from gateway.web.state import RUNTIME
from tests.audit.test_tamper import DOC_VERIFY
from tests.gateway.conftest import Stack, build_stack
from tests.gateway.test_openapi import check_against_openapi, check_problem, check_signed, raw_request
from tests.officers.conftest import OFFICER, raw_log, stored_entries

SEARCH = "/v1/audit/search"
DOC = Path(__file__).resolve().parents[2] / "docs" / "officers.md"
PROOF_CHECK = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8").split("## 3.")[1], re.S)[0]
Entry = dict[str, Any]


@pytest.fixture
async def busy(tmp_path: Path) -> AsyncIterator[Stack]:
    """A gateway whose log holds a small day of activity; tree heads only when asked (no cadence head)."""
    def quiet(settings: Any) -> Any:
        return replace(settings, tree_head_interval_s=3600.0)

    async with build_stack(tmp_path, quiet) as stack:
        population = stack.population
        asd = stack.client
        for name in ("deceased_father", "child_out_of_school", "amo_tadamon"):
            assert (await asd.verify({"idcs": population.fixture(name).father.idcs}, "asd.eligibility",
                                     f"ASD-{name}")).status == 200
        salaried = population.fixture("salaried_parent").father
        assert (await asd.verify({"idcs": salaried.idcs}, "asd.eligibility", "ASD-ID", ["identity"])).status == 200
        assert (await asd.verify({"cin": str(salaried.cin)}, "asd.eligibility", "ASD-CIN",
                                 ["identity", "employment"])).status == 200
        assert (await asd.verify({"idcs": population.unknown_idcs()}, "asd.eligibility", "ASD-404")).status == 404
        assert (await asd.verify({"cin": "ZZ999999"}, "asd.eligibility", "ASD-CIN-404")).status == 404
        async with stack.client_for("cnss.amo-tadamon") as tadamon:
            father = population.fixture("amo_tadamon").father
            assert (await tadamon.verify({"idcs": father.idcs}, "amo.tadamon.eligibility", "AMO-1")).status == 200
            assert (await tadamon.verify({"idcs": father.idcs}, "amo.tadamon.eligibility", "AMO-2",
                                         ["schooling"])).status == 403
        async with stack.client_for("mhpv.housing") as housing:
            assert (await housing.verify({"idcs": salaried.idcs}, "partner.social-housing", "HOUSING-1",
                                         ["identity"])).status == 403
        yield stack


@pytest.fixture
async def officer(busy: Stack) -> AsyncIterator[GatewayClient]:
    async with busy.client_for(OFFICER) as client:
        yield client


async def search(officer: GatewayClient, **body: Any) -> dict[str, Any]:
    answer = await officer.request("POST", SEARCH, body)
    assert answer.status == 200, answer.body
    check_signed(answer)
    document: dict[str, Any] = check_against_openapi(answer, "post", SEARCH)
    return document


async def search_all(officer: GatewayClient, **body: Any) -> list[tuple[int, Entry]]:
    """Every page, following next_cursor; no duplicates, strictly newest first."""
    found: list[tuple[int, Entry]] = []
    page = await search(officer, **body)
    for _ in range(500):
        found += [(e["index"], e["entry"]) for e in page["entries"]]
        if page["next_cursor"] is None:
            break
        page = await search(officer, **body, cursor=page["next_cursor"])
    indices = [i for i, _ in found]
    assert indices == sorted(set(indices), reverse=True), indices
    return found


def truth(stack: Stack, keep: Callable[[Entry], bool]) -> list[int]:
    """The indices the stored log says match, newest first."""
    return [i for i, e in reversed(list(enumerate(stored_entries(stack)))) if keep(e)]


def idcs(stack: Stack, name: str) -> str:
    return stack.population.fixture(name).father.idcs


# --- search ----------------------------------------------------------------------------------------------------------


async def test_every_filter_finds_what_the_log_holds(busy: Stack, officer: GatewayClient) -> None:
    times = [e["time"] for e in stored_entries(busy)]
    since, until = times[3], times[8]
    cases: list[tuple[dict[str, Any], Callable[[Entry], bool]]] = [
        ({"client": "cnss.amo-tadamon"}, lambda e: e["client"] == "cnss.amo-tadamon"),
        ({"purpose": "partner.social-housing"}, lambda e: e["purpose"] == "partner.social-housing"),
        ({"case_ref": "ASD-CIN"}, lambda e: e["case_ref"] == "ASD-CIN"),
        ({"outcome": "subject_not_found"}, lambda e: e["outcome"] == "subject_not_found"),
        ({"outcome": "forbidden_check"}, lambda e: e["outcome"] == "forbidden_check"),
        ({"check": "employment"}, lambda e: "employment" in e["checks"]),
        ({"check": "schooling"}, lambda e: "schooling" in e["checks"]),
        ({"source": "education"}, lambda e: any(s["name"] == "education" for s in e["sources"])),
        ({"source": "civil_registry"}, lambda e: any(s["name"] == "civil_registry" for s in e["sources"])),
        ({"since": since}, lambda e: e["time"] >= since),
        ({"until": until}, lambda e: e["time"] < until),
        ({"since": since, "until": until, "client": "anss.asd", "check": "identity"},
         lambda e: since <= e["time"] < until and e["client"] == "anss.asd" and "identity" in e["checks"]),
        ({"client": "anss.asd", "outcome": "answered", "source": "employment"},
         lambda e: e["client"] == "anss.asd" and e["outcome"] == "answered"
         and any(s["name"] == "employment" for s in e["sources"])),
    ]
    for body, keep in cases:
        want = truth(busy, keep)
        assert want, f"the activity has entries for {body}"
        page = await search(officer, limit=200, **body)
        assert [e["index"] for e in page["entries"]] == want, body
        assert page["next_cursor"] is None
        stored = stored_entries(busy)
        assert all(e["entry"] == stored[e["index"]] for e in page["entries"]), "the entries as stored"
    assert (await search(officer, client="nobody"))["entries"] == []


async def test_pages_reach_the_end_without_duplicates(busy: Stack, officer: GatewayClient) -> None:
    everything = truth(busy, lambda e: True)
    found = await search_all(officer, limit=3)
    assert [i for i, _ in found] == everything, "every entry once, newest first, across pages"
    asd = await search_all(officer, client="anss.asd", limit=2)
    assert [i for i, _ in asd] == truth(busy, lambda e: e["client"] == "anss.asd")


async def test_a_citizen_is_found_by_identifier_which_the_log_never_holds(busy: Stack,
                                                                         officer: GatewayClient) -> None:
    father = busy.population.fixture("salaried_parent").father
    found = await search_all(officer, subject={"idcs": father.idcs}, limit=2)
    cases = {e["case_ref"] for _, e in found}
    assert cases == {"ASD-ID", "ASD-CIN", "HOUSING-1"}, "by IDCS: also the verification asked by CIN"
    pseudonym = found[0][1]["subject"]
    assert all(e["subject"] == pseudonym for _, e in found)
    by_cin = await search(officer, subject={"cin": "ZZ999999"})
    assert [e["entry"]["case_ref"] for e in by_cin["entries"]] == ["ASD-CIN-404"], "a CIN the registry lacks"
    assert (await search(officer, subject={"idcs": busy.population.unknown_idcs()}))["entries"][0]["entry"][
        "case_ref"] == "ASD-404"

    logged = [e for e in stored_entries(busy) if e["path"] == SEARCH and e["detail"]["filters"].get("subject")]
    assert len(logged) == 4, "each page of an officer's search is logged"
    first = logged[0]
    assert (first["client"], first["outcome"], first["subject"]) == (OFFICER, "audit_searched", pseudonym)
    assert first["detail"]["filters"] == {"subject": pseudonym, "subject_kind": "idcs", "limit": 2}
    assert (first["detail"]["hits"], first["detail"]["more"]) == (2, True)
    assert logged[1]["detail"]["filters"]["cursor"] == found[1][0]
    for identifier in (father.idcs, str(father.cin), "ZZ999999", busy.population.unknown_idcs()):
        assert identifier.encode() not in raw_log(busy), f"{identifier} is stored nowhere in the log"


async def test_a_citizen_whose_data_was_read_for_another_is_found_as_co_subject(busy: Stack,
                                                                               officer: GatewayClient) -> None:
    """Who read this child's data? The child is no query's subject, but each household verification of a parent
    names them among its co_subjects: the officer finds those entries by ``co_subject``."""
    household = busy.population.fixture("salaried_parent")
    pseudonymiser = busy.gateway.runner.app[RUNTIME].pseudonymiser
    for member in household.members[1:]:  # the mother and the children
        pseudonym = pseudonymiser.pseudonym("idcs", member.idcs)
        expected = truth(busy, lambda e, p=pseudonym: p in e.get("co_subjects", ()))
        if not expected:
            continue
        found = await search_all(officer, co_subject={"idcs": member.idcs})
        assert [i for i, _ in found] == expected
        assert not await search_all(officer, subject={"idcs": member.idcs}, co_subject={"idcs": member.idcs})
        logged = next(e for e in stored_entries(busy)
                      if e["path"] == SEARCH and e["detail"]["filters"].get("co_subject") == pseudonym)
        assert logged["subject"] == pseudonym and logged["detail"]["filters"]["co_subject_kind"] == "idcs"
        assert member.idcs.encode() not in raw_log(busy)
        return
    raise AssertionError("the fixture's household verifications name no co-subject")


async def test_search_bodies_are_validated(busy: Stack, officer: GatewayClient) -> None:
    for body in ({"since": "2026-13-01T00:00:00Z"}, {"since": "2026-11-23T10:00:00"},
                 {"since": "2026-11-23T10:00:00Z", "until": "2026-11-23T09:00:00Z"},
                 {"since": "0001-01-01T00:00:00+01:00"}, {"cursor": "AAAAAAAAAAAA"}, {"cursor": "x"},
                 {"subject": {"idcs": "1234567890", "cin": "AB123456"}}, {"subject": {"idcs": "123"}},
                 {"limit": 0}, {"limit": 201}, {"check": "credit_score"}, {"client": ""}, {"name": "x"}):
        answer = await officer.request("POST", SEARCH, body)
        check_problem(answer, 400, "invalid_request", "post", SEARCH)
        assert not any(str(v) in answer.body.decode() for v in body.values() if isinstance(v, str) and len(v) > 3)
    answer = await officer.request("POST", SEARCH, body=b"{}", headers={"Content-Type": "text/plain"})
    check_problem(answer, 415, "unsupported_media_type", "post", SEARCH)


async def test_filters_never_come_in_the_url_and_a_cursor_is_one_the_gateway_gave(busy: Stack,
                                                                                  officer: GatewayClient) -> None:
    for query in ("?limit=5", "?subject=1"):  # officers.md section 2: in the body, never in the URL
        answer = await officer.request("POST", SEARCH + query, {})
        check_problem(answer, 400, "invalid_request", "post", SEARCH)
    size = len(stored_entries(busy))
    for index in (0, size + 10, 10**6):  # well-formed, but no page ever stopped there
        answer = await officer.request("POST", SEARCH, {"cursor": encode_cursor(index)})
        check_problem(answer, 400, "invalid_request", "post", SEARCH)
    given = (await search(officer, limit=2))["next_cursor"]
    assert given is not None and (await search(officer, limit=2, cursor=given))["entries"]
    for method, path in (("GET", "/v1/audit/integrity"), ("GET", "/v1/audit/entries/0")):
        answer = await officer.request(method, path, body=b"{}", headers={"Content-Type": "application/json"})
        assert (answer.status, answer.json()["code"]) == (400, "invalid_request"), (path, answer.body)


async def test_rfc_3339_times_with_any_fraction_and_lower_case_letters(busy: Stack, officer: GatewayClient) -> None:
    everything = await search(officer, client="anss.asd", limit=200)  # (the officer's own searches add entries)
    assert everything["entries"]
    for since in ("2000-01-01T00:00:00.1234567Z", "2000-01-01t00:00:00z", "2000-01-01T01:00:00.123456789+01:00"):
        found = await search(officer, client="anss.asd", since=since, limit=200)
        assert found["entries"] == everything["entries"], since
    newest = everything["entries"][0]["entry"]["time"]
    assert (await search(officer, client="anss.asd", since=newest.replace("T", "t").replace("+00:00", "z")))[
        "entries"][0]["index"] == everything["entries"][0]["index"]


async def test_a_crafted_cursor_beyond_the_stores_integers_is_refused_and_logged(busy: Stack,
                                                                                 officer: GatewayClient) -> None:
    for index in (2**63, 2**64 - 1):  # well-formed, but no index of any store: 400, not 503 (SQLite) or 200
        answer = await officer.request("POST", SEARCH, {"cursor": encode_cursor(index)})
        check_problem(answer, 400, "invalid_request", "post", SEARCH)
    refused = [e for e in stored_entries(busy) if e["path"] == SEARCH and e["status"] == 400]
    assert len(refused) == 2 and all(e["outcome"] == "invalid_request" for e in refused)


# --- entries and proofs ---------------------------------------------------------------------------------------------


async def jwks_keys(officer: GatewayClient) -> dict[str, Any]:
    async with officer.session.get(f"{officer.base_url}/.well-known/jwks.json") as resp:
        document: dict[str, Any] = await resp.json(content_type=None)
    return document


async def entry(officer: GatewayClient, index: int) -> dict[str, Any]:
    answer = await officer.request("GET", f"/v1/audit/entries/{index}")
    assert answer.status == 200, answer.body
    check_signed(answer)
    document: dict[str, Any] = check_against_openapi(answer, "get", "/v1/audit/entries/{index}")
    return document


async def test_an_entry_comes_with_a_proof_that_verifies(busy: Stack, officer: GatewayClient) -> None:
    last = len(stored_entries(busy)) - 1
    uncovered = await entry(officer, last)
    assert uncovered["covered"] is False and uncovered["inclusion"] is None
    assert "no signed tree head covers" in uncovered["explanation"]

    assert (await officer.request("GET", "/v1/audit/export")).status == 200  # signs a head for the current size
    jwks = await jwks_keys(officer)
    keys = {k["kid"]: public_from_jwk(k) for k in jwks["keys"]}
    stored = stored_entries(busy)
    for index in (0, 5, last):
        document = await entry(officer, index)
        raw = b64url_decode(document["entry_bytes"])
        assert orjson.loads(raw) == document["entry"] == stored[index]
        leaf = b64url_decode(document["leaf_hash"])
        assert leaf == m.leaf_hash(raw) == hashlib.sha256(b"\x00" + raw).digest()
        inclusion = document["inclusion"]
        head = m.SignedTreeHead.from_json({"type": "tree_head", **inclusion["tree_head"]})
        assert m.TreeHead.verify(head, keys) == head.head, "the head is signed by a published key"
        assert head.head.tree_size == inclusion["tree_size"] > index and document["covered"] is True
        proof = [b64url_decode(p) for p in inclusion["proof"]]
        assert m.verify_inclusion(leaf, index, head.head.tree_size, proof, head.head.root_hash)
        assert not m.verify_inclusion(m.leaf_hash(raw + b" "), index, head.head.tree_size, proof,
                                      head.head.root_hash), "the proof is for these bytes only"
        exec(PROOF_CHECK, {"doc": document, "jwks": jwks})  # the check printed in docs/officers.md, as printed
        forged = {**document, "entry_bytes": base64.urlsafe_b64encode(raw + b" ").decode().rstrip("=")}
        with pytest.raises(AssertionError):
            exec(PROOF_CHECK, {"doc": forged, "jwks": jwks})
    shown = [e for e in stored_entries(busy) if e["outcome"] == "audit_entry_shown"]
    assert [e["detail"]["index"] for e in shown] == [last, 0, 5, last]


async def test_unknown_entries_and_stray_parameters(busy: Stack, officer: GatewayClient) -> None:
    count = len(stored_entries(busy))
    check_problem(await officer.request("GET", f"/v1/audit/entries/{count + 5}"), 404, "not_found", "get",
                  "/v1/audit/entries/{index}")
    # not an index the OpenAPI allows (an integer from 0 to 2^63 - 1): 400, once the caller is known
    for index in ("-1", "abc", "9223372036854775808", "9" * 20, "%D9%A1", "01"):
        check_problem(await officer.request("GET", f"/v1/audit/entries/{index}"), 400, "invalid_request", "get",
                      "/v1/audit/entries/{index}")
        check_problem(await raw_request(busy, "GET", f"/v1/audit/entries/{index}"), 401, "unauthenticated")
    check_problem(await officer.request("GET", "/v1/audit/entries/1?x=1"), 400, "invalid_request")
    check_problem(await officer.request("GET", "/v1/audit/export?proofs=maybe"), 400, "invalid_request")
    check_problem(await officer.request("POST", "/v1/audit/verify", {"now": True}), 400, "invalid_request")


# --- integrity, verification, export ---------------------------------------------------------------------------------


async def officer_get(officer: GatewayClient, path: str) -> dict[str, Any]:
    answer = await officer.request("GET", path)
    assert answer.status == 200, answer.body
    check_signed(answer)
    document: dict[str, Any] = check_against_openapi(answer, "get", path)
    return document


async def verify_now(officer: GatewayClient) -> dict[str, Any]:
    answer = await officer.request("POST", "/v1/audit/verify")
    assert answer.status == 200, answer.body
    check_signed(answer)
    document: dict[str, Any] = check_against_openapi(answer, "post", "/v1/audit/verify")
    return document


async def test_verify_now_and_its_result_in_the_integrity_panel(busy: Stack, officer: GatewayClient) -> None:
    before = await officer_get(officer, "/v1/audit/integrity")
    assert before["last_verification"] is None
    assert before["entries"] == len(stored_entries(busy)) - 1, "the integrity request's own entry comes after"
    head_size = before["latest_tree_head"]["tree_size"] if before["latest_tree_head"] else 0
    assert before["unsigned_entries"] == before["entries"] - head_size

    result = await verify_now(officer)
    assert (result["result"], result["first_bad_index"], result["verified_by"]) == ("intact", None, OFFICER)
    integrity = await officer_get(officer, "/v1/audit/integrity")
    last = integrity["last_verification"]
    assert (last["result"], last["verified_by"], last["entries"]) == ("intact", OFFICER, result["entries"])
    assert {k: v for k, v in last.items() if k != "entry_index"} == result, "one verification, one record of it"
    recorded = stored_entries(busy)[last["entry_index"]]
    assert (recorded["path"], recorded["outcome"], recorded["detail"]["result"]) == \
        ("/v1/audit/verify", "audit_verification", "intact")

    _tamper(busy, 4)
    broken = await verify_now(officer)
    assert (broken["result"], broken["first_bad_index"]) == ("broken", 4)
    assert "altered" in broken["reason"]
    last = (await officer_get(officer, "/v1/audit/integrity"))["last_verification"]
    assert (last["result"], last["first_bad_index"], last["reason"]) == ("broken", 4, broken["reason"])


async def test_verify_now_names_an_entry_hidden_from_the_search_index(busy: Stack, officer: GatewayClient) -> None:
    """The index is not in the tree, but verification checks it: an entry removed from it, which every search
    would then miss, makes the log broken at that entry."""
    [(index, _)] = await search_all(officer, case_ref="ASD-CIN")
    conn = sqlite3.connect(busy.settings.audit_database, isolation_level=None)
    try:  # as someone with write access to the file would: drop the guard, delete the entry's index row
        conn.execute("DROP TRIGGER access_index_no_delete")
        conn.execute("DELETE FROM access_index WHERE idx = ?", (index,))
    finally:
        conn.close()
    assert await search_all(officer, case_ref="ASD-CIN") == []
    broken = await verify_now(officer)
    assert (broken["result"], broken["first_bad_index"]) == ("broken", index)
    assert broken["reason"] == f"the search index misses entry {index}: officers' searches would not find it"


def _tamper(stack: Stack, index: int) -> None:
    """Alter an entry's bytes in the file, as someone with write access to it would."""
    conn = sqlite3.connect(stack.settings.audit_database, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER access_log_no_update")
        conn.execute("UPDATE access_log SET entry = replace(entry, 'ASD-', 'XSD-') WHERE idx = ?", (index,))
    finally:
        conn.close()


async def export(officer: GatewayClient, stack: Stack, query: str = "") -> list[str]:
    answer = await officer.request("GET", f"/v1/audit/export{query}")
    assert answer.status == 200, answer.body
    check_signed(answer)
    assert answer.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    size = len(stored_entries(stack)) - 1  # the export request's own entry comes after
    assert answer.headers["Content-Disposition"] == f'attachment; filename="anss-gateway.access-{size}.jsonl"'
    logged = stored_entries(stack)[-1]
    assert (logged["outcome"], logged["detail"]["tree_size"], logged["detail"]["bytes"]) == \
        ("audit_exported", size, len(answer.body))
    return answer.body.decode("utf-8").splitlines()


async def test_the_export_verifies_offline(busy: Stack, officer: GatewayClient) -> None:
    jwks = await jwks_keys(officer)
    for _ in range(2):  # the second export holds two signed heads and the consistency proof between them
        lines = await export(officer, busy)
        size = len(stored_entries(busy)) - 1
        summary = verify_export_lines(lines, jwks)
        assert (summary.tree_size, summary.pruned) == (size, 0)
        assert DOC_VERIFY(lines, jwks)[0] == size, "the reference verifier printed in docs/merkle-log.md agrees"
    assert {orjson.loads(x)["type"] for x in lines} == {"log", "entry", "inclusion", "tree_head", "consistency"}
    bare = await export(officer, busy, "?proofs=false")
    assert {orjson.loads(x)["type"] for x in bare} == {"log", "entry", "tree_head"}
    assert verify_export_lines(bare, jwks).tree_size == len(stored_entries(busy)) - 1
    assert stored_entries(busy)[-1]["detail"]["proofs"] is False


async def test_a_too_large_export_is_refused(tmp_path: Path) -> None:
    small = build_stack(tmp_path, lambda s: replace(s, audit_export_max_bytes=3000))
    async with small as stack, stack.client_for(OFFICER) as officer:
        assert (await officer.request("GET", "/v1/audit/export")).status == 200, "a small log fits"
        for _ in range(6):
            await officer.request("GET", "/v1/audit/integrity")
        answer = await officer.request("GET", "/v1/audit/export")
        problem = check_problem(answer, 422, "export_too_large", "get", "/v1/audit/export")
        assert "anss-gateway audit export" in problem["detail"]
        assert stored_entries(stack)[-1]["outcome"] == "export_too_large"


# --- role separation --------------------------------------------------------------------------------------------------


async def test_data_clients_cannot_read_the_log(busy: Stack) -> None:
    requests: list[tuple[str, str, Any]] = [("POST", SEARCH, {"client": "anss.asd"}),
                                            ("GET", "/v1/audit/entries/0", None),
                                            ("GET", "/v1/audit/integrity", None), ("POST", "/v1/audit/verify", None),
                                            ("GET", "/v1/audit/export", None)]
    for client_id in ("anss.asd", "mhpv.housing"):
        async with busy.client_for(client_id) as client:
            for method, path, body in requests:
                answer = await client.request(method, path, body)
                openapi_path = "/v1/audit/entries/{index}" if "/entries/" in path else path
                problem = check_problem(answer, 403, "forbidden_role", method.lower(), openapi_path)
                assert "only security officers" in problem["detail"]
                entry = stored_entries(busy)[-1]
                assert (entry["client"], entry["path"], entry["outcome"]) == (client_id, path, "forbidden_role")


async def test_an_unsigned_request_is_refused_before_the_role(busy: Stack, officer: GatewayClient) -> None:
    async with officer.session.post(f"{officer.base_url}{SEARCH}", data=b"{}",
                                    headers={"Content-Type": "application/json"}) as resp:
        status, document = resp.status, orjson.loads(await resp.read())
    assert (status, document["code"]) == (401, "unauthenticated")


def test_cursors_are_opaque_and_checked() -> None:
    for index in (0, 1, 41, 2**63 - 1):
        text = encode_cursor(index)
        assert text is not None and len(text) == 12
        assert decode_cursor(text) == index
    assert encode_cursor(None) is None
    forged = base64.urlsafe_b64encode(b"\x02" + (5).to_bytes(8, "big")).decode()
    for bad in (forged, "AQAAAAAAAAAF=", "AQAAAAAAAAA", encode_cursor(2**63), encode_cursor(2**64 - 1)):
        with pytest.raises(BadRequest, match="cursor"):
            decode_cursor(bad or "")
