"""The ``Log-Checkpoint`` header on every answer and the public ``/log/checkpoint`` and ``/log/consistency``
resources, on a real gateway in front of the real simulators with a real witness on loopback
(docs/merkle-log.md section 14)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import yarl

from gateway.audit import checkpoint as cp
from gateway.audit import log_id_for
from gateway.audit.merkle import verify_consistency
from gateway.audit.witness.guard import load_checkpoint_key
from gateway.audit.witness.service import RunningWitness
from gateway.config.clients import RateLimit
from gateway.web.checkpoint import BEACON, CheckpointBeacon, decode_header
from gateway.web.state import RUNTIME
from tests.audit.witness.test_gateway import witness, witnessed_by  # noqa: F401  (the fixture)
from tests.gateway.conftest import Stack, build_stack

HEADER = "Log-Checkpoint"


async def raw(stack: Stack, method: str, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.typedefs.LooseHeaders,
                                                                            bytes]:
    async with stack.client.session.request(method, stack.gateway.url + path, **kwargs) as response:
        return response.status, response.content_type, response.headers.copy(), await response.read()


async def until(predicate: Any, what: str) -> None:
    for _ in range(400):  # the signer's round comes about once a second; give a busy machine time
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def parser_refusal_header(stack: Stack) -> str:
    """The ``Log-Checkpoint`` header of the answer to bytes the HTTP parser refuses (no request exists)."""
    url = yarl.URL(stack.gateway.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(b"GARBAGE\r\n\r\n")
        await writer.drain()
        head = (await asyncio.wait_for(reader.read(65536), 10)).split(b"\r\n\r\n", 1)[0].decode("latin-1")
    finally:
        writer.close()
    status_line, *lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert " 400 " in status_line and headers["Content-Type"].startswith("application/problem+json"), head
    return headers[HEADER]


def beacon_of(stack: Stack) -> CheckpointBeacon:
    return stack.gateway.runner.app[BEACON]


async def verify(stack: Stack, case: str) -> int:
    household = stack.population.fixture("deceased_father")
    return (await stack.client.verify({"idcs": household.mother.idcs}, "asd.eligibility", case)).status


async def test_every_answer_carries_the_latest_cosigned_checkpoint(tmp_path: Any, witness: RunningWitness) -> None:  # noqa: F811
    async with build_stack(tmp_path, witnessed_by(witness)) as stack:
        vkey = cp.verifier_key(log_id_for(stack.settings.gateway_id),
                               load_checkpoint_key(stack.settings.witnessing.key_path(stack.settings.state_dir)))
        status, _, headers, _ = await raw(stack, "GET", "/healthz")
        assert status == 200 and HEADER not in headers  # a new log: no checkpoint yet, no header
        status, _, headers, _ = await raw(stack, "GET", "/log/checkpoint")
        assert status == 404 and HEADER not in headers
        for i in range(3):
            assert await verify(stack, f"CASE-{i}") == 200
        runtime = stack.gateway.runner.app[RUNTIME]

        async def caught_up() -> bool:
            return beacon_of(stack).size == await runtime.access_log.count() and beacon_of(stack).size >= 3
        await until(caught_up, "a checkpoint of the whole log")
        note = beacon_of(stack).note
        assert note is not None
        checkpoint = cp.open_checkpoint(note, [vkey])
        assert [c.name for c in cp.verify_cosignatures(note, [witness.witness.vkey])] == [witness.witness.vkey.name]
        # the same note on every kind of answer: verification, services, batches, problems, public resources
        answers = [await stack.client.verify({"idcs": "0000000000"}, "asd.eligibility", "CASE-X"),
                   await stack.client.request("GET", "/v1/services"),
                   await stack.client.request("POST", "/v1/batches?purpose=asd.eligibility&case_ref_prefix=RV-",
                                              body=b'{"idcs": "12"}\n',
                                              headers={"Content-Type": "application/x-ndjson"}),
                   await stack.client.request("GET", "/v1/nowhere")]
        assert [a.status for a in answers][1:] == [200, 400, 404]
        assert all(a.headers["Content-Type"].startswith("application/problem+json") for a in answers[2:])
        seen = [a.headers[HEADER] for a in answers]
        for method, path in (("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/.well-known/jwks.json"),
                             ("GET", "/metrics"), ("GET", "/schemas/problem.json"), ("GET", "/log/checkpoint"),
                             ("POST", "/v1/verifications"), ("GET", "/console/login")):
            status, _, headers, _ = await raw(stack, method, path)
            assert HEADER in headers, f"{method} {path} ({status})"
            seen.append(headers[HEADER])
        seen.append(await parser_refusal_header(stack))  # what aiohttp's parser refuses is answered with it too
        for value in seen:  # (the log grows as these are answered: a later checkpoint may have come meanwhile)
            shown = cp.open_checkpoint(decode_header(value), [vkey])
            assert shown.size >= checkpoint.size and shown.origin == vkey.name
        # the checkpoint, with its cosignature, is kept with its head in the log and carried by the export
        assert await runtime.access_log.checkpoint(checkpoint.size) == note
        out = io.StringIO()
        await runtime.access_log.export(out)
        carried = {d["tree_size"]: d["checkpoint"] for d in map(json.loads, out.getvalue().splitlines())
                   if d["type"] == "tree_head" and "checkpoint" in d}
        assert carried[checkpoint.size] == note
        # the checkpoint resource: the exact note
        status, content_type, headers, body = await raw(stack, "GET", "/log/checkpoint")
        assert (status, content_type) == (200, "text/plain")
        assert cp.open_checkpoint(body.decode(), [vkey]).size >= checkpoint.size
        assert base64.b64decode(headers[HEADER]).decode() == body.decode()


async def test_consistency_proofs_and_their_refusals(tmp_path: Any) -> None:
    async with build_stack(tmp_path, lambda s: replace(s, tree_head_max_entries=1)) as stack:
        runtime = stack.gateway.runner.app[RUNTIME]
        roots: dict[int, bytes] = {}
        for i in range(5):  # a checkpoint after each entry: the roots of five sizes
            assert await verify(stack, f"CASE-{i}") == 200

            async def signed(i: int = i) -> bool:
                return beacon_of(stack).size == i + 1
            await until(signed, f"a checkpoint of size {i + 1}")
            note = beacon_of(stack).note
            assert note is not None
            shown = cp.parse_checkpoint(cp.parse_note(note).text)
            roots[shown.size] = shown.root_hash
        for old, new in ((1, 5), (2, 4), (3, 3), (0, 5), (4, 5)):
            status, content_type, headers, body = await raw(stack, "GET", f"/log/consistency?from={old}&to={new}")
            assert (status, content_type) == (200, "application/json") and HEADER in headers
            document = orjson.loads(body)
            assert (document["from"], document["to"]) == (old, new)
            proof = [base64.b64decode(h, validate=True) for h in document["proof"]]
            if old in (0, new):
                assert proof == []
            else:
                assert verify_consistency(old, new, roots[old], roots[new], proof)
                assert not verify_consistency(old, new, roots[new], roots[old], proof)
        status, _, _, body = await raw(stack, "GET", "/log/consistency?from=2")  # to: the latest checkpoint's
        assert status == 200 and orjson.loads(body)["to"] == beacon_of(stack).size
        count = await runtime.access_log.count()
        for query, code in (("", "invalid_tree_size"), ("?to=3", "invalid_tree_size"),
                            ("?from=abc&to=3", "invalid_tree_size"), ("?from=01&to=3", "invalid_tree_size"),
                            ("?from=-1&to=3", "invalid_tree_size"), ("?from=4&to=3", "invalid_tree_size"),
                            (f"?from=1&to={2**63}", "invalid_tree_size"),
                            (f"?from=1&to={count + 1}", "tree_size_beyond_log"),
                            ("?from=1&from=2&to=3", "invalid_request"), ("?from=1&to=3&to=4", "invalid_request"),
                            ("?from=1&to=3&extra=1", "invalid_request")):
            status, content_type, headers, body = await raw(stack, "GET", f"/log/consistency{query}")
            problem = orjson.loads(body)
            assert (status, content_type, problem["code"]) == (400, "application/problem+json", code), query
            assert HEADER in headers
        assert await runtime.access_log.count() == count  # public resources: not recorded in the access log


async def test_the_log_resources_are_rate_limited_per_address(tmp_path: Any) -> None:
    async with build_stack(tmp_path, lambda s: replace(s, default_rate_limit=RateLimit(0.01, 3))) as stack:
        statuses = [(await raw(stack, "GET", "/log/consistency?from=0&to=0"))[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        status, _, headers, body = await raw(stack, "GET", "/log/checkpoint")
        assert (status, orjson.loads(body)["code"]) == (429, "rate_limited") and "Retry-After" in headers


def test_the_documented_header_is_the_worked_example_of_section_12() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "merkle-log.md").read_text(encoding="utf-8")
    section_12 = text[text.index("## 12. Checkpoints"):text.index("## 13. Witnesses")]
    blocks = section_12.split("```text\n")
    note = next(b.split("```")[0] for b in blocks if b.startswith("anss.gov.ma/access-log\n5\n"))
    log_vkey = next(b.split("```")[0].strip() for b in blocks if b.startswith("anss.gov.ma/access-log+"))
    section_14 = text[text.index("## 14."):]
    header = section_14.split("Log-Checkpoint: ", 2)[2].split("\n")[0]
    assert decode_header(header) == note
    assert cp.open_checkpoint(note, [cp.parse_verifier_key(log_vkey)]).size == 5


async def test_replicas_on_postgresql_show_the_signers_checkpoint(tmp_path: Any) -> None:
    from tests.audit.pg_support import fresh_schema_async

    async with fresh_schema_async() as target:
        def postgres(settings: Any) -> Any:
            return replace(settings, storage_backend="postgres", database=target, tree_head_max_entries=1)
        async with build_stack(tmp_path, postgres) as a, build_stack(tmp_path, postgres) as b:
            for i in range(3):  # answered by b; whichever replica is elected signs, the other reads the table
                assert await verify(b, f"CASE-{i}") == 200
            runtime = b.gateway.runner.app[RUNTIME]

            async def both_show_the_whole_log() -> bool:
                count = await runtime.access_log.count()
                return beacon_of(a).size == beacon_of(b).size == count
            await until(both_show_the_whole_log, "both replicas showing a checkpoint of the whole log")
            assert beacon_of(a).note == beacon_of(b).note == await runtime.access_log.checkpoint()
            _, _, headers, _ = await raw(b, "GET", "/healthz")
            assert decode_header(headers[HEADER]) == beacon_of(b).note
