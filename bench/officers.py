"""Do officers' heavy reads starve the clients? A client's verification latency through the real gateway, idle and
while an officer repeatedly asks for the anomaly flags and an oversized export. Printed, never asserted.

The simulators run in a spawned process; the gateway (SQLite stores in a temporary state directory) and the load
generator in this one, as in ``bench.verifications``. Before the gateway starts, its access log gets ``--entries``
entries of the configured clients over the last 15 days (``bench.anomalies``), so the anomaly view has a real
history and the export is larger than ``[audit] export_max_bytes`` (the case where the whole export was built and
then refused). Then, for ``--seconds`` each:

1. idle: ``--concurrency`` clients verify in a closed loop (anss.asd, asd.eligibility, the identity check);
2. busy: the same, while one officer loops over ``GET /v1/audit/anomalies`` and another over
   ``GET /v1/audit/export`` (both signed as dgssi.officer).

    python -m bench.officers [--entries 300000] [--seconds 15] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson

from bench.anomalies import build
from bench.spawned import simulators_process
from bench.verifications import bench_settings, sample_households
from gateway.audit import SqliteAccessLog
from gateway.client import client_assertion
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path
from gateway.web.runner import gateway_running

CLIENT, PURPOSE, OFFICER = "anss.asd", "asd.eligibility", "dgssi.officer"


class Signed:
    """Signed requests of one client, as ``GatewayClient`` sends them."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: keys.SigningKey, client: str,
                 audience: str) -> None:
        self.session, self.base, self.key, self.client, self.audience = session, base, key, client, audience

    async def send(self, method: str, path: str, body: bytes = b"") -> tuple[int, int]:
        headers = {"Authorization": "Bearer " + client_assertion(self.key, self.client, self.audience, method, path,
                                                                 body)}
        if body:
            headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.base + path, data=body or None, headers=headers) as resp:
            return resp.status, len(await resp.read())


async def clients(signed: Signed, subjects: list[str], concurrency: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            i = next(counter)
            body = orjson.dumps({"subject": {"idcs": subjects[i % len(subjects)]}, "purpose": PURPOSE,
                                 "case_ref": f"OFF-{i:08d}", "checks": ["identity"]})
            started = time.perf_counter()
            status, _ = await signed.send("POST", "/v1/verifications", body)
            if status == 200:
                latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def officer(signed: Signed, path: str, stop: asyncio.Event, log: list[tuple[int, float]]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        status, _ = await signed.send("GET", path)
        log.append((status, (time.perf_counter() - started) * 1000))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 100 else max(values, default=0.0)


async def run(entries: int, seconds: float, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="anss-bench-officers-") as tmp:
        settings = bench_settings(Path(tmp))
        configured = tuple(sorted(c for c in settings.clients if settings.clients[c].role != "officer"))
        store = SqliteAccessLog(settings.audit_database)
        await store.open()
        started = time.perf_counter()
        written = await build(store, entries, 5000, clients=(*configured, *configured)[:10],
                              now=datetime.now(UTC).replace(microsecond=0))
        await store.close()
        print(f"access log: {written:,} entries built in {time.perf_counter() - started:,.0f} s", flush=True)
        with simulators_process(settings) as sims:
            served = replace(settings.with_connector_urls(sims.urls), tree_head_interval_s=1.0)
            subjects = sample_households(served, 200, "officers")
            async with gateway_running(served, port=0) as gw, aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=120)) as session:
                client = Signed(session, gw.url, keys.load_or_create(dev_client_key_path(settings.state_dir, CLIENT)),
                                CLIENT, settings.gateway_id)
                officers = Signed(session, gw.url, keys.load_or_create(
                    dev_client_key_path(settings.state_dir, OFFICER)), OFFICER, settings.gateway_id)
                await clients(client, subjects, concurrency, 3)  # warm up
                idle = await clients(client, subjects, concurrency, seconds)
                stop = asyncio.Event()
                views: list[tuple[int, float]] = []
                exports: list[tuple[int, float]] = []
                readers = [asyncio.create_task(officer(officers, "/v1/audit/anomalies", stop, views)),
                           asyncio.create_task(officer(officers, "/v1/audit/export", stop, exports))]
                busy = await clients(client, subjects, concurrency, seconds)
                stop.set()
                await asyncio.gather(*readers)
        print(f"client verifications (concurrency {concurrency}, {seconds:g} s each):")
        for name, lat in (("idle", idle), ("during officers' reads", busy)):
            print(f"  {name:<24} {len(lat):>6} answers   p50 {pct(lat, 50):7.1f} ms   p99 {pct(lat, 99):7.1f} ms")
        print(f"  p99 ratio (busy / idle)  {pct(busy, 99) / max(pct(idle, 99), 1e-9):.2f}   "
              f"p50 ratio {pct(busy, 50) / max(pct(idle, 50), 1e-9):.2f}")
        for name, done in (("anomaly views", views), ("exports", exports)):
            codes = sorted({s for s, _ in done})
            times = [t for _, t in done]
            print(f"  officers' {name:<14} {len(done):>4} done (HTTP {codes}), median "
                  f"{statistics.median(times) if times else 0:,.0f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--entries", type=int, default=300_000)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--concurrency", type=int, default=4)
    o = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(o.entries, o.seconds, o.concurrency))


if __name__ == "__main__":
    main()
