"""What docs/batches.md and schemas/openapi.json promise about batches, checked on the real stack (SQLite, the
embedded engine, the simulators slowed down where timing matters): a cancel stops the chunk being worked on,
``X-Batch-Next-After`` is there while more may follow (and ``batch results`` says when a batch is unfinished),
rate and ETA from the first result, the answers follow the published schemas, refusals at submission."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.api.batches import contiguous
from gateway.batch.runner import progress_document, progress_rate
from gateway.batch.store import Batch, Progress
from gateway.cli.main import main
from tests.batch.test_batches import FIXTURES, log_entries, submit, upload, wait_done
from tests.gateway.conftest import Stack
from tests.gateway.test_openapi import OPENAPI, SCHEMAS, assert_valid, check_against_openapi, openapi

DOCS = Path(__file__).resolve().parents[2] / "docs" / "batches.md"
CONCURRENCY = 8  # [batches] concurrency: the group of lines in flight at once within a chunk


def slow(stack: Stack, delay_s: float) -> None:
    for control in stack.simulators.controls.values():
        control.delay_s = delay_s


def fathers(stack: Stack, count: int) -> list[dict[str, str]]:
    return [{"idcs": stack.population.fixture(FIXTURES[i % 5]).father.idcs} for i in range(count)]


async def status_of(stack: Stack, batch_id: str) -> dict[str, Any]:
    answer = await stack.client.request("GET", f"/v1/batches/{batch_id}")
    assert answer.status == 200, answer.body
    document: dict[str, Any] = answer.json()
    return document


def answered(status: dict[str, Any]) -> int:
    return int(status["done"]) + int(status["failed"])


def batch_log(stack: Stack, batch_id: str) -> list[dict[str, Any]]:
    return [e for e in log_entries(stack) if e["method"] == "BATCH" and e["detail"].get("batch_id") == batch_id]


# ------------------------------------------------------------------------------------------------ 1. cancel


async def test_a_cancel_stops_the_chunk_being_worked_on(stack: Stack) -> None:
    """120 lines in one chunk, cancelled once a few are answered: only the group in flight finishes — no subject is
    started afterwards (no result, no access-log entry) — and the counts add up to the total."""
    slow(stack, 0.1)
    batch_id = (await submit(stack.client, upload(fathers(stack, 120)))).json()["batch_id"]
    for _ in range(400):
        if answered(await status_of(stack, batch_id)) >= CONCURRENCY:
            break
        await asyncio.sleep(0.02)
    answer = await stack.client.request("POST", f"/v1/batches/{batch_id}/cancel")
    cancelled = answer.json()
    assert cancelled["status"] == "cancelled" and cancelled["pending"] == 0
    at_cancel = answered(cancelled)
    assert at_cancel < 120
    await asyncio.sleep(3.0)  # long enough for many more groups, had the runner gone on with the chunk
    later = await status_of(stack, batch_id)
    assert answered(later) <= at_cancel + CONCURRENCY, f"work went on after the cancel: {at_cancel} → {later}"
    await asyncio.sleep(1.0)
    final = await status_of(stack, batch_id)
    assert answered(final) == answered(later), "nothing more once the group in flight finished"
    assert final["total"] == final["done"] + final["failed"] + final["pending"] + final["dropped"]
    assert final["pending"] == 0 and final["dropped"] == 120 - answered(final) > 0
    assert len(batch_log(stack, batch_id)) == answered(final), "one access-log entry per answered subject, no more"
    assert_valid((SCHEMAS / "batch.json").as_uri(), final)


# ------------------------------------------------------------------------------ 2. X-Batch-Next-After and the CLI


async def test_next_after_is_set_while_the_batch_runs_and_the_cli_says_it_is_unfinished(
        stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    slow(stack, 0.1)
    batch_id = (await submit(stack.client, upload(fathers(stack, 80)))).json()["batch_id"]
    page = await stack.client.request("GET", f"/v1/batches/{batch_id}/results?after=0")
    assert page.headers["X-Batch-Status"] == "running"
    lines = [orjson.loads(line) for line in page.body.splitlines()]
    assert "X-Batch-Next-After" in page.headers, "more lines may follow: the batch still runs"
    assert int(page.headers["X-Batch-Next-After"]) == (lines[-1]["line"] if lines else 0)

    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(stack.settings.state_dir))
    out = tmp_path / "results.jsonl"
    code = await asyncio.to_thread(main, ["batch", "results", batch_id, "--out", str(out), "--url", stack.gateway.url])
    err = capsys.readouterr().err
    assert code == 3 and "not finished" in err, err
    assert len(out.read_text(encoding="utf-8").splitlines()) < 80

    code = await asyncio.to_thread(main, ["batch", "results", batch_id, "--out", str(out), "--follow",
                                          "--url", stack.gateway.url])
    err = capsys.readouterr().err
    assert code == 0, err
    got = [json.loads(line)["line"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert got == list(range(1, 81)), "followed to the end: every line once, in order"
    last = await stack.client.request("GET", f"/v1/batches/{batch_id}/results?after=80")
    assert last.headers["X-Batch-Status"] == "done" and "X-Batch-Next-After" not in last.headers


def test_a_page_of_a_running_batch_stops_before_the_first_missing_line() -> None:
    rows = [(1, b"a"), (2, b"b"), (4, b"d")]
    assert contiguous(rows, 0) == [(1, b"a"), (2, b"b")], "line 3 is not answered yet: not skipped"
    assert contiguous(rows[2:], 3) == [(4, b"d")] and contiguous([], 7) == []


# ------------------------------------------------------------------------------------------------ 3. rate, ETA


async def test_rate_and_eta_from_the_first_result(stack: Stack) -> None:
    slow(stack, 0.2)
    submitted = time.time()
    batch_id = (await submit(stack.client, upload(fathers(stack, 40)))).json()["batch_id"]
    for _ in range(600):
        status = await status_of(stack, batch_id)
        if answered(status):
            break
        await asyncio.sleep(0.02)
    seen = time.time()
    assert status["status"] == "running" and 0 < answered(status) < 40
    assert status["rate_per_s"] is not None and status["eta_s"] is not None, status
    # measured since the batch started working (after the submission), up to now
    assert status["rate_per_s"] >= answered(status) / (seen - submitted) - 0.01
    assert status["eta_s"] == pytest.approx(status["pending"] / status["rate_per_s"], rel=0.05)
    done = await wait_done(stack.client, batch_id)
    assert done["rate_per_s"] is not None and done["eta_s"] is None


def test_the_rate_counts_the_time_before_the_first_result() -> None:
    batch = Batch("0" * 32, "anss.asd", "asd.eligibility", ("identity",), "RV-", 100, 1000, "running",
                  created_at=1000.0, finished_at=None, started_at=1010.0)
    one_group = Progress(batch, 8, 0, 1012.0, 1012.0)  # 8 results written at once, 2 s after the first claim
    assert progress_rate(one_group, now=1012.0) == pytest.approx(4.0)
    document = progress_document(one_group, now=1014.0)
    assert (document["rate_per_s"], document["eta_s"]) == (2.0, 46.0)  # 8 in 4 s; 92 left
    assert progress_document(Progress(batch, 0, 0, None, None), now=1014.0)["rate_per_s"] is None
    old = Batch(batch.batch_id, batch.client, batch.purpose, batch.checks, batch.case_ref_prefix, 100, 1000, "done",
                1000.0, 1020.0)  # stored before started_at was recorded: measured from created_at
    assert progress_rate(Progress(old, 90, 10, 1005.0, 1020.0)) == pytest.approx(5.0)


# ------------------------------------------------------------------------------------- 4, 5. the published schemas


async def test_the_answers_follow_the_published_schemas(stack: Stack) -> None:
    subjects = [*fathers(stack, 3), {"idcs": stack.population.unknown_idcs()}]
    answer = await submit(stack.client, upload(subjects))
    assert answer.status == 202
    batch = check_against_openapi(answer, "post", "/v1/batches")  # the Location header: /v1/batches/<32 hex>
    assert answer.headers["Location"] == f"/v1/batches/{batch['batch_id']}"
    await wait_done(stack.client, batch["batch_id"])
    page = await stack.client.request("GET", f"/v1/batches/{batch['batch_id']}/results")
    lines = [orjson.loads(line) for line in page.body.splitlines()]
    assert [line["line"] for line in lines] == [1, 2, 3, 4] and "error" in lines[3]
    for line in lines:
        assert_valid((SCHEMAS / "batch.json").as_uri() + "#/$defs/result_line", line)
    for line in lines[:3]:  # a verified line is the verification document, its request_id <batch_id>:<line>
        assert line["request_id"] == f"{batch['batch_id']}:{line['line']}"
        assert_valid((SCHEMAS / "verification-response.json").as_uri(), line)
    plain = {k: v for k, v in lines[0].items() if k not in ("line", "jws")}
    with pytest.raises(AssertionError):  # exactly that form: an API answer's request_id has no ":<line>"
        assert_valid((SCHEMAS / "verification-response.json").as_uri(), plain)
    plain["request_id"] = batch["batch_id"]
    assert_valid((SCHEMAS / "verification-response.json").as_uri(), plain)


# ---------------------------------------------------------------------------------- 6, 8. refused at submission


async def test_a_cin_under_a_consent_based_purpose_is_refused_naming_its_line(stack: Stack) -> None:
    body = upload([{"idcs": "1234567890"}, {"cin": "BE123456"}])
    async with stack.client_for("mhpv.housing") as partner:
        answer = await submit(partner, body, purpose="partner.social-housing", checks=("identity",))
    assert (answer.status, answer.json()["code"]) == (400, "invalid_request"), answer.body
    assert "line 2" in answer.json()["detail"] and "IDCS" in answer.json()["detail"]


async def test_uploads_are_ndjson_and_lines_are_numbered_as_case_ref(stack: Stack) -> None:
    body = upload([{"idcs": stack.population.fixture("amo_tadamon").father.idcs}])
    query = "/v1/batches?purpose=asd.eligibility&case_ref_prefix=CT-&check=identity"
    seq = await stack.client.request("POST", query, body=b"\x1e" + body,
                                     headers={"Content-Type": "application/json-seq"})
    assert (seq.status, seq.json()["code"]) == (415, "unsupported_media_type"), "RS-separated, not NDJSON"
    assert "NDJSON" in seq.json()["detail"] and "application/x-ndjson" in seq.json()["detail"]
    jsonl = await stack.client.request("POST", query, body=body, headers={"Content-Type": "application/jsonl"})
    assert jsonl.status == 202, jsonl.body
    bad = await submit(stack.client, b'\n{"idcs": "1234567890"}\n\n{"idcs": "12"}\n')
    assert bad.status == 400 and "line 2 (line 4 of the file)" in bad.json()["detail"], bad.body


# ------------------------------------------------------------------------------------------------- 7. /metrics


async def test_the_metrics_description_says_what_is_sent(stack: Stack) -> None:
    async with stack.client.session.get(stack.gateway.url + "/metrics") as resp:
        content_type = resp.headers["Content-Type"]
    version = dict(p.strip().split("=", 1) for p in content_type.split(";")[1:] if "=" in p)["version"]
    description = openapi()["paths"]["/metrics"]["get"]["description"]
    assert f"version={version}" in description and "0.0.4" not in description, OPENAPI
    assert "anss_gateway_batch_subjects_total{outcome}" in description
    assert "anss_gateway_batch_subjects_total{outcome}" in DOCS.read_text(encoding="utf-8")
