"""A legitimate client's latency, idle and during an unauthenticated flood from another process.

    python -m bench.floods [--seconds S] [--concurrency C] [--tarpit-s T] [--households N]

The four simulators run in a spawned process, the gateway in this one (its embedded SQLite stores, its
shipped ``[refusals]`` budget unless ``--tarpit-s`` overrides the hold), and a legitimate client in this one
too: one ``asd.eligibility`` verification at a time, as a case worker's screen would ask, signed like
``GatewayClient``. It runs ``--seconds`` idle, then ``--seconds`` while a *flooder* — a separate spawned
process, so that its own work does not run on the gateway's event loop — sends garbage bearer tokens at
``--concurrency`` as fast as it is answered. Printed: the legitimate client's p50/p99 idle and during the
flood and their ratio (the target is p99 during ≤ 2× idle), what the flooder sent and got back, and the
access-log entries the flood appended. ``--tarpit-s 0.001`` shows the gateway without the hold of counted
refusals (docs/security.md section 8). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import orjson

from bench.sides import CLIENT_ID, PURPOSE, VERIFY_PATH, new_session
from bench.spawned import simulators_process
from bench.verifications import bench_settings, sample_households
from gateway.client import client_assertion
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path
from gateway.web.runner import gateway_running


def _flooder_main(url: str, concurrency: int, seconds: float, out: Connection) -> None:
    out.send(asyncio.run(_flood(url, concurrency, seconds)))
    out.close()


async def _flood(url: str, concurrency: int, seconds: float) -> dict[str, int]:
    statuses: Counter[str] = Counter()
    stop = time.monotonic() + seconds
    body = b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"FLOOD"}'

    async def one(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            try:
                async with session.post(url, data=body, headers={"Authorization": "Bearer not.a.token",
                                                                 "Content-Type": "application/json"}) as resp:
                    await resp.read()
                    statuses[str(resp.status)] += 1
            except aiohttp.ClientError:
                statuses["connection_error"] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(one(session) for _ in range(concurrency)))
    return dict(statuses)


async def _legitimate(url: str, session: aiohttp.ClientSession, key: keys.SigningKey, audience: str,
                      subjects: list[str], seconds: float) -> list[float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    i = 0
    while time.monotonic() < stop:
        body = orjson.dumps({"subject": {"idcs": subjects[i % len(subjects)]}, "purpose": PURPOSE,
                             "case_ref": f"LEGIT-{i}"})
        headers = {"Content-Type": "application/json",
                   "Authorization": "Bearer " + client_assertion(key, CLIENT_ID, audience, "POST", VERIFY_PATH, body)}
        started = time.perf_counter()
        async with session.post(url + VERIFY_PATH, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"the legitimate client got {resp.status}")
        latencies.append(time.perf_counter() - started)
        i += 1
    return latencies


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def _anonymous_entries(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return sum(1 for (entry,) in conn.execute("SELECT entry FROM access_log WHERE entry IS NOT NULL")
                   if orjson.loads(entry)["client"] is None)
    finally:
        conn.close()


async def run(opts: argparse.Namespace, state_dir: Path) -> int:
    settings = bench_settings(state_dir)
    if opts.tarpit_s is not None:
        settings = replace(settings, refusals=replace(settings.refusals, tarpit_s=opts.tarpit_s))
    subjects = sample_households(settings, opts.households, "floods")
    with simulators_process(settings) as sims:
        settings = settings.with_connector_urls(sims.urls)
        client_key = keys.load_or_create(dev_client_key_path(settings.state_dir, CLIENT_ID))
        async with gateway_running(settings, port=0) as gw, new_session() as session:
            await _legitimate(gw.url, session, client_key, settings.gateway_id, subjects, 2.0)  # warm up
            idle = await _legitimate(gw.url, session, client_key, settings.gateway_id, subjects, opts.seconds)
            before = _anonymous_entries(settings.audit_database)
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            flooder = ctx.Process(target=_flooder_main, args=(gw.url + VERIFY_PATH, opts.concurrency, opts.seconds,
                                                             child), daemon=True)
            flooder.start()
            await asyncio.sleep(0.5)  # the flooder's interpreter starts: measure while it floods
            during = await _legitimate(gw.url, session, client_key, settings.gateway_id, subjects,
                                       opts.seconds - 1.0)
            statuses = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
            flooder.join(10)
        appended = _anonymous_entries(settings.audit_database) - before  # the last counters are written at stop
    sent = sum(statuses.values())
    print(f"legitimate client, one verification at a time: idle {len(idle)} answers, p50 {_pct(idle, 50):.1f} ms, "
          f"p99 {_pct(idle, 99):.1f} ms; during the flood {len(during)} answers, p50 {_pct(during, 50):.1f} ms, "
          f"p99 {_pct(during, 99):.1f} ms")
    ratio = _pct(during, 99) / _pct(idle, 99)
    print(f"p99 during the flood / idle: {ratio:.2f} (target <= 2.00); "
          f"median {statistics.median(during) / statistics.median(idle):.2f}")
    print(f"flood: {sent:,} requests in {opts.seconds:.0f} s at concurrency {opts.concurrency} "
          f"({sent / opts.seconds:,.0f}/s), answers {dict(sorted(statuses.items()))}; "
          f"{appended} access-log entries appended for them; hold of a counted refusal "
          f"{settings.refusals.tarpit_s} s, at most {settings.refusals.tarpit_max} at once")
    return 0 if ratio <= 2.0 or not opts.strict else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floods", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each phase, idle and flooded (default 10)")
    parser.add_argument("--concurrency", type=int, default=64, help="the flooder's requests in flight (default 64)")
    parser.add_argument("--tarpit-s", type=float, default=None,
                        help="override [refusals] tarpit_s (0.001: no hold, to compare)")
    parser.add_argument("--households", type=int, default=200, help="subjects the legitimate client cycles through")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the p99 ratio is above 2")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="anss-floods-") as tmp:
        return asyncio.run(run(opts, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
