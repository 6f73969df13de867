"""Batches on procrastinate with real ``anss-gateway worker`` processes on the real PostgreSQL (a fresh schema per
test, tests/audit/pg_support.py: skipped with a plain reason when PostgreSQL is not running, failed in CI).

The gateway under test (in this process) only enqueues; the workers are subprocesses. One test shares a batch
between two workers; the other kills one with SIGKILL in the middle of a chunk and checks that the other takes
the chunk back by itself (stalled-job recovery) — every line has exactly one result and one access-log entry.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.config.settings import Settings
from gateway.stores.postgres import PostgresTarget
from tests.audit.pg_support import fresh_schema
from tests.batch.test_batches import FIXTURES, all_results, submit, upload
from tests.batch.workers import Workers, config_with_batches, owner_pid, query, worker_env
from tests.gateway.conftest import Stack, build_stack

FAST = {"engine": "procrastinate", "serve_works": False, "worker_concurrency": 1, "heartbeat_s": 0.5,
        "stalled_after_s": 3, "recover_every_s": 0.5, "drain_s": 20}


@dataclass
class Cluster:
    stack: Stack
    target: PostgresTarget
    workers: Workers


@asynccontextmanager
async def cluster(tmp_path: Path, chunk_size: int) -> AsyncIterator[Cluster]:
    values = {**FAST, "chunk_size": chunk_size}
    with fresh_schema() as target:
        def on_postgres(settings: Settings) -> Settings:
            batches = replace(settings.batches, **{k: float(v) if k.endswith("_s") else v for k, v in values.items()})
            return replace(settings, storage_backend="postgres", database=target, batches=batches)

        async with build_stack(tmp_path, on_postgres) as stack:
            config = config_with_batches(tmp_path, values)
            env = worker_env(config, stack.settings.state_dir, target, stack.simulators.urls)
            workers = Workers(env, tmp_path)
            try:
                yield Cluster(stack, target, workers)
            finally:
                await asyncio.to_thread(workers.stop_all)


async def until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def batch_entries(target: PostgresTarget, batch_id: str) -> Counter[str]:
    entries = [orjson.loads(bytes(row[0])) for row in query(target, "SELECT entry FROM access_log")]
    return Counter(e["case_ref"] for e in entries
                   if e["method"] == "BATCH" and e.get("detail", {}).get("batch_id") == batch_id)


def registered(target: PostgresTarget, count: int) -> bool:
    return len(query(target, "SELECT id FROM procrastinate_workers")) >= count


def batch_done(target: PostgresTarget, batch_id: str) -> bool:
    return query(target, "SELECT status FROM batches WHERE batch_id = %s", batch_id) == [("done",)]


async def test_two_workers_share_a_batch(tmp_path: Path) -> None:
    async with cluster(tmp_path, chunk_size=10) as c:
        for control in c.stack.simulators.controls.values():
            control.delay_s = 0.02
        procs = [c.workers.start(), c.workers.start()]
        await until(lambda: registered(c.target, 2), 60, "two workers registered")
        subjects = [{"idcs": c.stack.population.fixture(FIXTURES[i % 5]).father.idcs} for i in range(120)]
        answer = await submit(c.stack.client, upload(subjects))
        assert answer.status == 202, answer.body
        batch_id = answer.json()["batch_id"]
        await until(lambda: batch_done(c.target, batch_id), 120, "the batch done")

        results = await all_results(c.stack.client, batch_id, limit=10_000)
        assert sorted(r["line"] for r in results) == list(range(1, 121))
        assert all(r["checks"]["identity"]["status"] == "verified" for r in results)
        assert batch_entries(c.target, batch_id) == Counter(f"RV-2026-{i}" for i in range(1, 121))
        runners = {owner_pid(r) for (r,) in query(c.target, "SELECT runner FROM batch_chunks")}
        assert runners == {p.pid for p in procs}, "both workers took chunks"
        assert query(c.target, "SELECT COUNT(*) FROM procrastinate_jobs") == [(0,)], "finished jobs are deleted"
        assert query(c.target, "SELECT COUNT(*) FROM batch_subjects") == [(0,)], "identifiers deleted once done"
    assert c.workers.procs and all(p.returncode == 0 for p in c.workers.procs), "SIGTERM drains and exits 0"


async def test_a_worker_with_a_probe_port_serves_its_health_readiness_and_metrics(tmp_path: Path) -> None:
    """``worker --probe-port``: /healthz, /readyz and /metrics of the worker's own process (its batch progress and
    administration calls, no personal value), and nothing of the API."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with cluster(tmp_path, chunk_size=10) as c:
        c.workers.start("--probe-port", str(port))
        await until(lambda: registered(c.target, 1), 60, "the worker registered")
        subjects = [{"idcs": c.stack.population.fixture(FIXTURES[i % 5]).father.idcs} for i in range(12)]
        answer = await submit(c.stack.client, upload(subjects))
        assert answer.status == 202, answer.body
        batch_id = answer.json()["batch_id"]
        await until(lambda: batch_done(c.target, batch_id), 120, "the batch done")
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "alive"
            async with session.get(base + "/readyz") as resp:
                ready = await resp.json()
                assert resp.status == 200 and ready["status"] == "ready", ready
            async with session.get(base + "/metrics") as resp:
                text = await resp.text()
            async with session.post(base + "/v1/verifications", data=b"{}") as resp:
                assert resp.status == 404, "a worker serves no API"
        counted = 'anss_gateway_batch_subjects_total{outcome="done"}'
        done = [line for line in text.splitlines() if line.startswith(counted)]
        assert done and float(done[0].split()[-1]) == 12.0, done
        assert 'anss_gateway_source_calls_total{' in text
        for subject in subjects:
            assert subject["idcs"] not in text, "no personal value in the metrics"


def chunk_in_progress(target: PostgresTarget, batch_id: str) -> tuple[str, int, int] | None:
    """A chunk being worked on with some of its lines answered and some not: (runner, first, last)."""
    for runner, first, last in query(target, "SELECT runner, first, last FROM batch_chunks WHERE batch_id = %s AND "
                                             "status = 'doing'", batch_id):
        (answered,) = query(target, "SELECT COUNT(*) FROM batch_results WHERE batch_id = %s AND line BETWEEN %s "
                                    "AND %s", batch_id, first, last)[0]
        if 0 < answered < last - first + 1 - 8:
            return runner, first, last
    return None


async def test_a_worker_killed_mid_chunk_is_replaced_with_nothing_lost_or_twice(tmp_path: Path) -> None:
    async with cluster(tmp_path, chunk_size=40) as c:
        for control in c.stack.simulators.controls.values():
            control.delay_s = 0.05
        procs = {p.pid: p for p in (c.workers.start(), c.workers.start())}
        await until(lambda: registered(c.target, 2), 60, "two workers registered")
        total = 160
        subjects = [{"idcs": c.stack.population.fixture(FIXTURES[i % 5]).father.idcs} for i in range(total)]
        batch_id = (await submit(c.stack.client, upload(subjects))).json()["batch_id"]

        runner, first, _last = await until(lambda: chunk_in_progress(c.target, batch_id), 60, "a chunk half done")
        victim = procs[owner_pid(runner) or -1]
        await asyncio.to_thread(Workers.kill, victim)  # SIGKILL: its chunk stays "doing" in procrastinate
        assert victim.returncode == -9
        survivor = next(p for pid, p in procs.items() if pid != victim.pid)

        await until(lambda: batch_done(c.target, batch_id), 120, "the batch done by the survivor alone")
        results = await all_results(c.stack.client, batch_id, limit=10_000)
        assert sorted(r["line"] for r in results) == list(range(1, total + 1)), "0 lost, 0 twice"
        entries = batch_entries(c.target, batch_id)
        assert entries == Counter(f"RV-2026-{i}" for i in range(1, total + 1)), "one access-log entry per subject"
        interrupted = [r["line"] for r in results if r.get("error", {}).get("code") == "batch_interrupted"]
        assert len(interrupted) <= 8, "at most the lines the killed worker had in flight"
        (taken_back,) = query(c.target, "SELECT runner, attempts FROM batch_chunks WHERE batch_id = %s AND first = %s",
                              batch_id, first)
        assert owner_pid(taken_back[0]) == survivor.pid and taken_back[1] >= 2, "retried on the other worker"
        assert survivor.poll() is None
        assert query(c.target, "SELECT COUNT(*) FROM procrastinate_jobs WHERE status = 'doing'") == [(0,)]


@pytest.mark.parametrize("engine", ["embedded"])
async def test_the_worker_command_refuses_the_embedded_engine(engine: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.cli.main import main

    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ANSS_GATEWAY_BATCH_ENGINE", engine)
    assert await asyncio.to_thread(main, ["worker"]) == 2
    assert "procrastinate" in capsys.readouterr().err


async def test_sigterm_drains_a_worker_its_running_chunk_finished_first(tmp_path: Path) -> None:
    async with cluster(tmp_path, chunk_size=30) as c:
        for control in c.stack.simulators.controls.values():
            control.delay_s = 0.3  # a chunk takes seconds: its drain outlasts any quick re-cancellation
        worker = c.workers.start()
        await until(lambda: registered(c.target, 1), 60, "the worker registered")
        subjects = [{"idcs": c.stack.population.fixture(FIXTURES[i % 5]).father.idcs} for i in range(90)]
        batch_id = (await submit(c.stack.client, upload(subjects))).json()["batch_id"]
        _runner, first, last = await until(lambda: chunk_in_progress(c.target, batch_id), 60, "a chunk half done")
        worker.terminate()  # SIGTERM
        assert await asyncio.to_thread(worker.wait, 30) == 0, "drained, then exited 0"
        (status, attempts) = query(c.target, "SELECT status, attempts FROM batch_chunks WHERE batch_id = %s AND "
                                             "first = %s", batch_id, first)[0]
        assert (status, attempts) == ("done", 1), "the running chunk was finished, not cut short"
        (answered,) = query(c.target, "SELECT COUNT(*) FROM batch_results WHERE batch_id = %s AND line BETWEEN %s "
                                      "AND %s", batch_id, first, last)[0]
        assert answered == last - first + 1
        assert not batch_done(c.target, batch_id), "no new chunk was taken after SIGTERM"
        c.workers.start()  # the rest is done by the next worker
        await until(lambda: batch_done(c.target, batch_id), 120, "the batch done")
        assert batch_entries(c.target, batch_id) == Counter(f"RV-2026-{i}" for i in range(1, 91))


async def test_serve_works_runs_the_jobs_inside_the_gateway(tmp_path: Path) -> None:
    with fresh_schema() as target:
        def working(settings: Settings) -> Settings:
            batches = replace(settings.batches, engine="procrastinate", serve_works=True, chunk_size=4,
                              heartbeat_s=0.5, stalled_after_s=3.0, recover_every_s=0.5)
            return replace(settings, storage_backend="postgres", database=target, batches=batches)

        async with build_stack(tmp_path, working) as stack:
            subjects = [{"idcs": stack.population.fixture(name).father.idcs} for name in FIXTURES * 2]
            batch_id = (await submit(stack.client, upload(subjects))).json()["batch_id"]
            await until(lambda: batch_done(target, batch_id), 60, "the batch done by serve's own worker")
            assert len(await all_results(stack.client, batch_id, limit=10_000)) == 10
            assert batch_entries(target, batch_id) == Counter(f"RV-2026-{i}" for i in range(1, 11))
