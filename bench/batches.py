"""Population re-verification on procrastinate: N households, W worker processes, one killed with SIGKILL mid-run.

    python -m bench.batches [--households 100000] [--workers 2] [--kill-at 0.3] [--no-restart]
                            [--chunk-size 1000] [--check C ...] [--dsn DSN] [--max-seconds 3600]

What runs (every process on this machine, loopback only):

* the five simulators in a spawned process (``bench.verifications.simulators_process``), the configured population;
* a gateway in this process on a fresh PostgreSQL schema (``[storage] backend = "postgres"``, engine
  ``procrastinate``, ``serve_works = false``: it only enqueues), to which the batch is submitted through the API,
  signed as ``anss.asd`` (purpose ``asd.eligibility``);
* W ``anss-gateway worker`` subprocesses (``tests/batch/workers.py``). Once ``--kill-at`` of the subjects have a
  result, a worker holding a chunk is killed with SIGKILL; unless ``--no-restart`` a new worker is started at
  once, as Kubernetes would restart the pod. Nobody tells the others: the stalled-job recovery of the remaining
  workers takes the dead one's chunk back after ``stalled_after_s``.

The subjects are the fathers of ``--households`` distinct households drawn with a fixed seed (a population
smaller than that is repeated, each repetition on lines of its own). Counted at the end, from the tables: result
lines (lost = lines without one; twice is impossible by the primary key, checked anyway), access-log entries per
``case_ref`` (lost = a line without an entry; duplicated = a line with more than one), ``batch_interrupted``
lines, households per second (wall, first to last result), the workers' CPU seconds (sampled from /proc, the
killed one's up to its death) and households per worker-core second, and the projection for 3.9 million
households on N two-core replicas (two workers each). The schema is dropped afterwards (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from bench.measure import cpu_seconds
from bench.spawned import simulators_process
from bench.verifications import bench_settings
from gateway.client import GatewayClient
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path, load_gateway_key
from gateway.stores.postgres import PostgresTarget
from gateway.web.runner import gateway_running
from simulators.population import Population
from tests.batch.workers import Workers, config_with_batches, owner_pid, query, worker_env

NATIONAL = 3_900_000


def subjects_for(population: Population, count: int, seed: str = "bench-batches") -> list[dict[str, str]]:
    indices = random.Random(seed).sample(range(population.households), min(count, population.households))
    fathers = [{"idcs": population.idcs_of(i, 0)} for i in indices]
    return [fathers[n % len(fathers)] for n in range(count)]


def doing_chunk_owner(target: PostgresTarget, batch_id: str) -> int | None:
    for (runner,) in query(target, "SELECT runner FROM batch_chunks WHERE batch_id = %s AND status = 'doing'",
                           batch_id):
        pid = owner_pid(runner)
        if pid is not None:
            return pid
    return None


def tally(target: PostgresTarget, batch_id: str, total: int) -> dict[str, Any]:
    lines = Counter(line for (line,) in query(target, "SELECT line FROM batch_results WHERE batch_id = %s", batch_id))
    codes: Counter[str] = Counter()
    for (blob,) in query(target, "SELECT result FROM batch_results WHERE batch_id = %s", batch_id):
        document = orjson.loads(bytes(blob))
        codes[document["error"]["code"] if "error" in document else "answered"] += 1
    entries: Counter[str] = Counter()
    for (blob,) in query(target, "SELECT entry FROM access_log WHERE entry IS NOT NULL"):
        entry = orjson.loads(bytes(blob))
        if entry["method"] == "BATCH" and entry.get("detail", {}).get("batch_id") == batch_id:
            entries[entry["case_ref"]] += 1
    prefix = "BENCH-"
    expected = {f"{prefix}{n}" for n in range(1, total + 1)}
    (first, last) = query(target, "SELECT MIN(at), MAX(at) FROM batch_results WHERE batch_id = %s", batch_id)[0]
    return {
        "results": sum(lines.values()),
        "results_lost": total - len(set(lines) & set(range(1, total + 1))),
        "results_twice": sum(c - 1 for c in lines.values() if c > 1),
        "log_entries": sum(entries.values()),
        "log_lost": len(expected - set(entries)),
        "log_duplicated": sum(c - 1 for c in entries.values() if c > 1),
        "outcomes": dict(codes),
        "first_to_last_result_s": round(float(last) - float(first), 1) if first is not None else None,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="bench-batches-"))
    settings = bench_settings(state / "state")
    load_gateway_key(settings)  # generated now: the simulators and every worker trust/use this one
    target = PostgresTarget(args.dsn, f"bench_{uuid.uuid4().hex[:12]}")
    values: dict[str, Any] = {"engine": "procrastinate", "serve_works": False, "chunk_size": args.chunk_size,
                              "worker_concurrency": args.worker_concurrency, "heartbeat_s": args.heartbeat_s,
                              "stalled_after_s": args.stalled_after_s, "recover_every_s": args.recover_every_s,
                              "max_subjects": max(200_000, args.households)}
    settings = replace(settings, storage_backend="postgres", database=target, batches=replace(
        settings.batches, **{k: float(v) if k.endswith("_s") else v for k, v in values.items()}))
    population = Population(settings.simulators.seed, settings.simulators.households)
    subjects = subjects_for(population, args.households)
    body = b"".join(orjson.dumps(s) + b"\n" for s in subjects)
    report: dict[str, Any] = {"households": args.households, "workers": args.workers, "chunk_size": args.chunk_size,
                              "settings": {k: v for k, v in values.items() if k not in ("engine",)}}
    with simulators_process(settings) as sims:
        settings = settings.with_connector_urls(sims.urls)
        config = config_with_batches(state, values)
        workers = Workers(worker_env(config, settings.state_dir, target, sims.urls), state)
        cpu: dict[int, float] = {}
        try:
            async with gateway_running(settings, port=0) as gw:
                key = keys.load_or_create(dev_client_key_path(settings.state_dir, "anss.asd"))
                async with GatewayClient(gw.url, "anss.asd", key, settings.gateway_id) as client:
                    for _ in range(args.workers):
                        workers.start()
                    while len(query(target, "SELECT id FROM procrastinate_workers")) < args.workers:
                        await asyncio.sleep(0.5)
                    q = "&".join(["purpose=asd.eligibility", "case_ref_prefix=BENCH-"]
                                 + [f"check={c}" for c in args.check or []])
                    answer = await client.request("POST", f"/v1/batches?{q}", body=body,
                                                  headers={"Content-Type": "application/x-ndjson"})
                    if answer.status != 202:
                        raise RuntimeError(f"submission refused: {answer.status} {answer.body[:300]!r}")
                    batch = answer.json()
                    batch_id, report["checks"] = batch["batch_id"], batch["checks"]
                    started, killed_at, deadline = time.monotonic(), None, time.monotonic() + args.max_seconds
                    sims_cpu0 = cpu_seconds(sims.pid)
                    while time.monotonic() < deadline:
                        for proc in workers.procs:
                            if proc.poll() is None:
                                cpu[proc.pid] = cpu_seconds(proc.pid)
                        status = (await client.request("GET", f"/v1/batches/{batch_id}")).json()
                        finished = status["done"] + status["failed"]
                        print(f"\r{finished}/{args.households} {status['rate_per_s']}/s {status['status']}   ",
                              end="", file=sys.stderr, flush=True)
                        if status["status"] != "running":
                            break
                        if killed_at is None and finished >= args.kill_at * args.households:
                            pid = await asyncio.to_thread(doing_chunk_owner, target, batch_id)
                            victim = next((p for p in workers.procs if p.pid == pid and p.poll() is None), None)
                            if victim is not None:
                                Workers.kill(victim)
                                killed_at = time.monotonic() - started
                                report["killed"] = {"at_s": round(killed_at, 1), "after_results": finished,
                                                    "pid": victim.pid}
                                print(f"\nkilled worker {victim.pid} with SIGKILL at {finished} results",
                                      file=sys.stderr)
                                if not args.no_restart:
                                    workers.start()
                        await asyncio.sleep(1.0)
                    print(file=sys.stderr)
                    report["wall_s"] = round(time.monotonic() - started, 1)
                    report["simulators_cpu_s"] = round(cpu_seconds(sims.pid) - sims_cpu0, 1)
                    report["status"] = status["status"]
        finally:
            codes = await asyncio.to_thread(workers.stop_all)
            report["worker_exit_codes"] = codes
        report.update(await asyncio.to_thread(tally, target, batch_id, args.households))
        recovered = query(target, "SELECT first, attempts, runner FROM batch_chunks WHERE batch_id = %s AND "
                                  "attempts > 1", batch_id)
        report["chunks_run_more_than_once"] = [{"first": f, "attempts": a} for f, a, _ in recovered]
    if not args.keep:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target.schema)))
    worker_cpu = sum(cpu.values())
    report["workers_cpu_s"] = round(worker_cpu, 1)
    span = report.get("first_to_last_result_s") or report["wall_s"]
    rate = args.households / span
    per_core = args.households / worker_cpu if worker_cpu else None
    report["households_per_s"] = round(rate, 1)
    report["households_per_worker_cpu_s"] = round(per_core, 1) if per_core else None
    if per_core:
        report["projection_3_9M"] = {
            f"{n}_replicas": f"{NATIONAL / (per_core * 2 * n) / 3600:.1f} h" for n in (1, 2, 4, 8, 16)}
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.batches", description=__doc__.split("\n\n")[0])
    p.add_argument("--households", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--worker-concurrency", type=int, default=2, help="chunks each worker runs at once")
    p.add_argument("--chunk-size", type=int, default=1000)
    p.add_argument("--check", action="append", help="checks to run (default: all the purpose allows)")
    p.add_argument("--kill-at", type=float, default=0.3, help="SIGKILL a worker once this share is done")
    p.add_argument("--no-restart", action="store_true", help="do not start a replacement for the killed worker")
    p.add_argument("--heartbeat-s", type=float, default=2.0)
    p.add_argument("--stalled-after-s", type=float, default=10.0)
    p.add_argument("--recover-every-s", type=float, default=2.0)
    p.add_argument("--max-seconds", type=float, default=3600.0)
    p.add_argument("--dsn", default=os.environ.get("ANSS_GATEWAY_TEST_DATABASE_DSN",
                                                   "postgresql://postgres@127.0.0.1:5432/test"))
    p.add_argument("--keep", action="store_true", help="keep the schema")
    args = p.parse_args(argv)
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2))
    ok = (report["status"] == "done" and not report["results_lost"] and not report["results_twice"]
          and not report["log_lost"] and not report["log_duplicated"])
    print("VALID: 0 lost, 0 duplicated" if ok else "NOT VALID: see the counts above", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
