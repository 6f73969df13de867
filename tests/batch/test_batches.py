"""Batches end to end on the real stack: submit, follow, read signed results, cancel; resume after a restart
with nothing lost and nothing duplicated."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from joserfc import jws
from joserfc.jwk import KeySet

from gateway.batch.store import SqliteBatchStore
from gateway.client import Answer, GatewayClient
from gateway.web.runner import gateway_running
from gateway.web.state import BATCHES
from tests.gateway.conftest import Stack, build_stack
from tests.gateway.test_signatures import REGISTRY

FIXTURES = ("deceased_father", "child_out_of_school", "salaried_parent", "amo_tadamon", "disabled_child")


def upload(subjects: list[dict[str, str]]) -> bytes:
    return b"".join(orjson.dumps(s) + b"\n" for s in subjects)


async def submit(client: GatewayClient, body: bytes, purpose: str = "asd.eligibility", prefix: str = "RV-2026-",
                 checks: tuple[str, ...] = ("identity", "household")) -> Answer:
    query = "&".join([f"purpose={purpose}", f"case_ref_prefix={prefix}"] + [f"check={c}" for c in checks])
    return await client.request("POST", f"/v1/batches?{query}", body=body,
                                headers={"Content-Type": "application/x-ndjson"})


async def wait_done(client: GatewayClient, batch_id: str, rounds: int = 300) -> dict[str, Any]:
    for _ in range(rounds):
        status: dict[str, Any] = (await client.request("GET", f"/v1/batches/{batch_id}")).json()
        if status["status"] != "running":
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch still running: {status}")


async def all_results(client: GatewayClient, batch_id: str, limit: int = 3) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    after = 0
    while True:
        answer = await client.request("GET", f"/v1/batches/{batch_id}/results?after={after}&limit={limit}")
        assert answer.status == 200 and answer.signature_header is not None
        lines += [orjson.loads(line) for line in answer.body.splitlines()]
        if "X-Batch-Next-After" not in answer.headers:
            return lines
        after = int(answer.headers["X-Batch-Next-After"])


def log_entries(stack: Stack) -> list[dict[str, Any]]:
    conn = sqlite3.connect(stack.settings.audit_database)
    try:
        return [orjson.loads(r[0]) for r in conn.execute("SELECT entry FROM access_log ORDER BY idx")]
    finally:
        conn.close()


async def test_a_batch_is_verified_line_by_line_logged_and_signed(stack: Stack) -> None:
    population = stack.population
    subjects = [{"idcs": population.fixture(name).father.idcs} for name in FIXTURES]
    subjects.append({"idcs": population.unknown_idcs()})
    answer = await submit(stack.client, upload(subjects))
    assert answer.status == 202, answer.body
    batch = answer.json()
    assert (batch["total"], batch["checks"]) == (6, ["identity", "household"])
    assert answer.headers["Location"] == f"/v1/batches/{batch['batch_id']}"
    done = await wait_done(stack.client, batch["batch_id"])
    assert (done["status"], done["done"], done["failed"], done["pending"]) == ("done", 5, 1, 0)

    results = await all_results(stack.client, batch["batch_id"])
    assert [r["line"] for r in results] == [1, 2, 3, 4, 5, 6]
    assert all(r["checks"]["identity"]["status"] == "verified" for r in results[:5])
    assert results[5]["error"]["code"] == "subject_not_found"
    assert [r["case_ref"] for r in results] == [f"RV-2026-{i}" for i in range(1, 7)]

    # each line verifies on its own, with an independent JOSE library and the published JWKS
    async with stack.client.session.get(stack.gateway.url + "/.well-known/jwks.json") as resp:
        key_set = KeySet.import_key_set(await resp.json(content_type=None))
    for result in results:
        token = result.pop("jws")
        jws.deserialize_compact(token, key_set, algorithms=["EdDSA"], registry=REGISTRY,
                                payload=orjson.dumps(result, option=orjson.OPT_SORT_KEYS))

    async with stack.client.session.get(stack.gateway.url + "/metrics") as resp:
        metrics = await resp.text()
    assert 'anss_gateway_batch_subjects_total{outcome="done"} 5.0' in metrics
    assert 'anss_gateway_batch_subjects_total{outcome="failed"} 1.0' in metrics

    per_subject = [e for e in log_entries(stack) if e["method"] == "BATCH"]
    assert Counter(e["case_ref"] for e in per_subject) == Counter(f"RV-2026-{i}" for i in range(1, 7))
    assert all(e["detail"]["batch_id"] == batch["batch_id"] and e["client"] == "anss.asd" for e in per_subject)
    assert [e["outcome"] for e in per_subject if e["case_ref"] == "RV-2026-6"] == ["subject_not_found"]
    raw = orjson.dumps(per_subject).decode()
    assert not [s["idcs"] for s in subjects if s["idcs"] in raw], "pseudonyms only in the log"


async def test_bad_uploads_and_rights_are_refused_at_once(stack: Stack) -> None:
    answer = await submit(stack.client, b'{"idcs": "1234567890"}\n{"idcs": "12"}\n')
    assert (answer.status, answer.json()["code"]) == (400, "invalid_request") and "line 2" in answer.json()["detail"]
    answer = await submit(stack.client, upload([{"idcs": "1234567890"}]), purpose="partner.social-housing")
    assert (answer.status, answer.json()["code"]) == (403, "forbidden_purpose")
    answer = await stack.client.request("POST", "/v1/batches?purpose=asd.eligibility&case_ref_prefix=X",
                                        body=b"{}", headers={"Content-Type": "application/json"})
    assert (answer.status, answer.json()["code"]) == (415, "unsupported_media_type")
    async with stack.client_for("cnss.amo-tadamon") as other:
        batch = (await submit(stack.client, upload([{"idcs": "1234567890"}]))).json()
        answer = await other.request("GET", f"/v1/batches/{batch['batch_id']}")
        assert (answer.status, answer.json()["code"]) == (404, "not_found"), "a batch is its submitter's only"


async def test_query_parameters_are_checked_as_strictly_as_a_verifications_body(stack: Stack) -> None:
    for checks in (("bogus",), ("",)):  # an unknown check is a malformed request (400), as in /v1/verifications
        answer = await submit(stack.client, upload([{"idcs": "1234567890"}]), checks=checks)
        assert (answer.status, answer.json()["code"]) == (400, "invalid_request"), checks
    answer = await stack.client.request(
        "POST", "/v1/batches?purpose=asd.eligibility&purpose=asd.eligibility&case_ref_prefix=X-", body=b"{}",
        headers={"Content-Type": "application/x-ndjson"})
    assert (answer.status, answer.json()["code"]) == (400, "invalid_request"), "a parameter given twice"
    batch = (await submit(stack.client, upload([{"idcs": "1234567890"}]))).json()
    results = f"/v1/batches/{batch['batch_id']}/results"
    for query in (f"?after={2**63}", "?after=+5", "?after=1&after=2", "?foo=1", "?limit=0", "?after=-1"):
        answer = await stack.client.request("GET", results + query)
        assert (answer.status, answer.json()["code"]) == (400, "invalid_request"), query
    assert (await stack.client.request("GET", results + f"?after={2**63 - 1}")).status == 200


async def test_results_read_just_after_a_cancel_wait_for_the_lines_still_in_flight(stack: Stack) -> None:
    """A cancel lets the group in flight finish: until it has, a page must not end the stream (no
    X-Batch-Next-After) — following the header gets every line that was answered, none missed."""
    for control in stack.simulators.controls.values():
        control.delay_s = 0.3
    subjects = [{"idcs": stack.population.fixture(FIXTURES[i % 5]).father.idcs} for i in range(60)]
    batch = (await submit(stack.client, upload(subjects))).json()
    store = stack.gateway.runner.app[BATCHES].store
    for _ in range(200):  # some lines answered, a group still in flight (read from the store: no request spent)
        progress = await store.progress(batch["batch_id"])
        if progress is not None and progress.done + progress.failed >= 1:
            break
        await asyncio.sleep(0.02)
    cancelled = await stack.client.request("POST", f"/v1/batches/{batch['batch_id']}/cancel")
    assert cancelled.status == 200, cancelled.body
    read: list[dict[str, Any]] = []  # at once, following the header, as a client would
    after, pages = 0, 0
    while True:
        answer = await stack.client.request("GET", f"/v1/batches/{batch['batch_id']}/results?after={after}")
        assert answer.status == 200, answer.body
        rows = [orjson.loads(line) for line in answer.body.splitlines()]
        read += rows
        pages += 1
        if "X-Batch-Next-After" not in answer.headers:
            break
        after = int(answer.headers["X-Batch-Next-After"])
        if not rows:
            await asyncio.sleep(0.2)  # settling: ask again a little later
    for control in stack.simulators.controls.values():
        control.delay_s = 0
    await asyncio.sleep(1.5)  # whatever was still in flight has landed by now
    final = await all_results(stack.client, batch["batch_id"], limit=1000)
    assert [r["line"] for r in read] == [r["line"] for r in final], "the stream ended before lines still coming"
    assert len(final) >= 1


async def test_a_cancelled_batch_stops_and_keeps_what_was_done(stack: Stack) -> None:
    for control in stack.simulators.controls.values():
        control.delay_s = 0.2
    subjects = [{"idcs": stack.population.fixture(FIXTURES[i % 5]).father.idcs} for i in range(60)]
    batch = (await submit(stack.client, upload(subjects))).json()
    cancelled = (await stack.client.request("POST", f"/v1/batches/{batch['batch_id']}/cancel")).json()
    assert cancelled["status"] == "cancelled" and cancelled["pending"] == 0
    await asyncio.sleep(0.5)
    after = (await stack.client.request("GET", f"/v1/batches/{batch['batch_id']}")).json()
    assert after["status"] == "cancelled" and after["done"] + after["failed"] < 60


async def test_a_batch_resumes_after_a_restart_with_nothing_lost_or_twice(tmp_path: Path) -> None:
    async with build_stack(tmp_path) as stack:
        for control in stack.simulators.controls.values():
            control.delay_s = 0.05
        subjects = [{"idcs": stack.population.fixture(FIXTURES[i % 5]).father.idcs} for i in range(40)]
        service = stack.gateway.runner.app[BATCHES]
        service.chunk_size = 10
        batch = (await submit(stack.client, upload(subjects))).json()
        for _ in range(100):  # let it get some way, then stop the gateway under it
            if (await service.store.progress(batch["batch_id"])).done >= 12:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
        await stack.gateway.runner.cleanup()
        reader = SqliteBatchStore(service.store.path)
        await reader.open()
        first = await reader.progress(batch["batch_id"])
        await reader.close()
        assert first is not None and 0 < first.done < 40
        for control in stack.simulators.controls.values():
            control.delay_s = 0.0
        async with (gateway_running(stack.settings, port=0) as again,
                    GatewayClient(again.url, "anss.asd", stack.client.key, stack.settings.gateway_id) as client):
            done = await wait_done(client, batch["batch_id"])
            results = await all_results(client, batch["batch_id"], limit=10_000)
        assert (done["status"], done["done"]) == ("done", 40)
        assert sorted(r["line"] for r in results) == list(range(1, 41))
        counts = Counter(e["case_ref"] for e in log_entries(stack) if e["method"] == "BATCH")
        assert counts == Counter(f"RV-2026-{i}" for i in range(1, 41)), "one log entry per subject, no more"


def in_doubt(path: Path, batch_id: str) -> int:
    """Lines claimed (being verified) that have no result yet: what a stop cut short would leave in doubt."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM batch_subjects s WHERE s.batch_id = ? AND s.claimed = 1 AND "
                                "NOT EXISTS (SELECT 1 FROM batch_results r WHERE r.batch_id = s.batch_id AND "
                                "r.line = s.line)", (batch_id,)).fetchone()[0])


async def test_a_clean_stop_lets_the_lines_in_flight_finish(tmp_path: Path) -> None:
    """The gateway stopped while a group of lines waits on the administrations: the group finishes before the
    process ends (nothing in doubt, so nothing reported as ``batch_interrupted``), the rest waits unclaimed."""
    async with build_stack(tmp_path) as stack:
        for control in stack.simulators.controls.values():
            control.delay_s = 0.3  # each round of a group takes this long: the stop comes in the middle
        service = stack.gateway.runner.app[BATCHES]
        service.chunk_size = 8
        subjects = [{"idcs": stack.population.fixture(FIXTURES[i % 5]).father.idcs} for i in range(24)]
        batch_id = (await submit(stack.client, upload(subjects))).json()["batch_id"]
        path = service.store.path
        for _ in range(500):
            if in_doubt(path, batch_id):
                break
            await asyncio.sleep(0.01)
        assert in_doubt(path, batch_id), "a group of lines is being verified"
        await stack.gateway.runner.cleanup()
        assert in_doubt(path, batch_id) == 0, "the lines in flight were finished, not cut short"
        for control in stack.simulators.controls.values():
            control.delay_s = 0.0
        async with (gateway_running(stack.settings, port=0) as again,
                    GatewayClient(again.url, "anss.asd", stack.client.key, stack.settings.gateway_id) as client):
            done = await wait_done(client, batch_id)
            results = await all_results(client, batch_id, limit=10_000)
        assert (done["status"], done["done"], done["failed"]) == ("done", 24, 0)
        assert not [r for r in results if "error" in r]
        counts = Counter(e["case_ref"] for e in log_entries(stack) if e["method"] == "BATCH")
        assert counts == Counter(f"RV-2026-{i}" for i in range(1, 25))


async def test_a_line_in_doubt_after_a_crash_is_reported_not_asked_twice(stack: Stack) -> None:
    """A worker killed between logging a subject and storing its result: the entry exists, the result does not."""
    service = stack.gateway.runner.app[BATCHES]
    engine = service.engine
    assert engine is not None
    store = service.store
    idcs = stack.population.fixture("amo_tadamon").father.idcs
    batch = await store.create("anss.asd", "asd.eligibility", ("identity",), "DOUBT-", [{"idcs": idcs}], 10)
    chunk = await store.claim_chunk("a-worker-that-will-die", 30.0)
    assert chunk is not None
    from gateway.batch.runner import verify_line
    await store.claim_lines(batch.batch_id, [1])
    await verify_line(engine.runtime, batch, 1, {"idcs": idcs}, engine.federation)  # logged, then "killed"
    calls = sum(c.calls for c in stack.simulators.controls.values())
    stale = await store.claim_chunk("another-worker", -1.0)  # the dead worker's heartbeat is stale
    assert stale is not None and stale.first == chunk.first
    from gateway.batch.runner import run_chunk
    await run_chunk(engine.runtime, store, stale, engine.federation)
    assert sum(c.calls for c in stack.simulators.controls.values()) == calls, "not asked a second time"
    (line,) = [orjson.loads(body) for _, body in await store.results(batch.batch_id, 0, 10)]
    assert line["error"]["code"] == "batch_interrupted"
    assert Counter(e["case_ref"] for e in log_entries(stack) if e["method"] == "BATCH") == Counter(["DOUBT-1"])


async def test_a_batch_verifies_as_of_a_date_and_in_the_language_asked(stack: Stack) -> None:
    idcs = stack.population.fixture("amo_tadamon").father.idcs
    query = "purpose=asd.eligibility&case_ref_prefix=ASOF-&check=identity&as_of=2025-09-01"
    answer = await stack.client.request("POST", f"/v1/batches?{query}", body=upload([{"idcs": idcs}]),
                                        headers={"Content-Type": "application/x-ndjson", "Accept-Language": "en"})
    assert answer.status == 202, answer.body
    batch = answer.json()
    assert (batch["as_of"], batch["language"]) == ("2025-09-01", "en")
    await wait_done(stack.client, batch["batch_id"])
    (line,) = await all_results(stack.client, batch["batch_id"])
    assert line["as_of"] == "2025-09-01", "verified as on that day, like POST /v1/verifications"
    entries = [e for e in log_entries(stack) if e["case_ref"] == "ASOF-1"]
    assert [e["detail"].get("as_of") for e in entries] == ["2025-09-01"]
    future = "purpose=asd.eligibility&case_ref_prefix=X&as_of=2999-01-01"
    refused = await stack.client.request("POST", f"/v1/batches?{future}", body=upload([{"idcs": idcs}]),
                                         headers={"Content-Type": "application/x-ndjson"})
    assert (refused.status, refused.json()["code"]) == (400, "invalid_request")
    default = (await submit(stack.client, upload([{"idcs": idcs}]))).json()
    assert (default["as_of"], default["language"]) == (None, "fr")
