"""Search latency of the SQLite access log's index, per query shape, over a large log. Printed, never asserted.

Fills a fresh log in a temporary directory with a year of verifications (20 clients and a rare one, five
purposes of very unequal use, 200,000 citizens, one to three checks, entries up to 45 s out of time order as
concurrent requests and replicas append them), then times the first page (50 hits) of each query shape an
officer or a citizen asks: one filter, combinations, recent and old time windows, a cursor deep in the log.

    python -m bench.access_log_search [--entries 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.audit import AccessRecord, SqliteAccessLog
from gateway.audit.query import LogQuery
from gateway.federation.checks.registry import builtin

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLIENTS = [f"client.{i}" for i in range(20)]
PURPOSES = ["asd.eligibility", "amo.coverage", "rsu.update", "fraud.check", "rare.purpose"]
CHECKS = list(builtin().names)
SOURCES = ["civil_registry", "education", "health", "employment"]


def record(i: int, spacing_s: float, subjects: list[str]) -> AccessRecord:
    rnd = random.Random(i)
    checks = tuple(rnd.sample(CHECKS, rnd.randint(1, 3)))
    return AccessRecord(
        time=(T0 + timedelta(seconds=i * spacing_s + rnd.uniform(-45, 45))).isoformat(timespec="microseconds"),
        request_id=uuid.uuid4().hex, method="POST", path="/v1/verifications", status=200,
        outcome="answered" if rnd.random() < 0.95 else "consent_missing", latency_ms=12.0,
        client=rnd.choice(CLIENTS) if rnd.random() > 0.001 else "client.rare",
        purpose=PURPOSES[min(int(rnd.expovariate(1.0)), 4)], case_ref=f"CASE-{i:08d}", checks=checks,
        subject=rnd.choice(subjects), sources=tuple((s, "ok") for s in SOURCES[:len(checks) + 1]),
        request_sha256=uuid.uuid4().hex * 2, response_sha256=uuid.uuid4().hex * 2,
    )


def shapes(days: float, subject: str) -> list[tuple[str, LogQuery]]:
    def day(n: float) -> datetime:
        return T0 + timedelta(days=n)

    old, recent = days * 0.03, days * 0.97
    return [
        ("newest entries, no filter", LogQuery()),
        ("one client", LogQuery(client="client.3")),
        ("a rare client (0.1 %)", LogQuery(client="client.rare")),
        ("a rare client, cursor deep in the log", LogQuery(client="client.rare", cursor=10_000)),
        ("a rarely used purpose", LogQuery(purpose="rare.purpose")),
        ("one case", LogQuery(case_ref="CASE-00001234")),
        ("refusals (5 %)", LogQuery(outcome="consent_missing")),
        ("one check", LogQuery(check="employment")),
        ("one source", LogQuery(source="employment")),
        ("one citizen (subject pseudonym)", LogQuery(subject=subject)),
        ("a recent day", LogQuery(since=day(recent), until=day(recent + 1))),
        ("an old day", LogQuery(since=day(old), until=day(old + 1))),
        ("an old day, rare purpose", LogQuery(since=day(old), until=day(old + 1), purpose="rare.purpose")),
        ("until an old day", LogQuery(until=day(old))),
        ("client + check + old day", LogQuery(client="client.3", check="household", since=day(old),
                                              until=day(old + 1))),
        ("client + refusals", LogQuery(client="client.3", outcome="consent_missing")),
        ("check + source + refusals", LogQuery(check="employment", source="health", outcome="consent_missing")),
        ("nothing matches", LogQuery(client="nobody")),
    ]


async def run(entries: int) -> None:
    subjects = [uuid.uuid4().hex * 2 for _ in range(200_000)]
    spacing = 365 * 86_400 / entries
    with tempfile.TemporaryDirectory(prefix="anss-bench-search-") as tmp:
        store = SqliteAccessLog(Path(tmp) / "access-log.sqlite3")
        await store.open()
        try:
            started = time.perf_counter()
            for start in range(0, entries, 2000):
                await asyncio.gather(*(store.append(record(i, spacing, subjects))
                                       for i in range(start, min(entries, start + 2000))))
            filled = time.perf_counter() - started
            print(f"SQLite access log search, {entries:,} entries over a year (filled in {filled:.0f} s, "
                  f"{entries / filled:,.0f} entries/s with 2000 in flight); first page of 50, median of 5")
            subject = record(entries // 2, spacing, subjects).subject or ""
            for name, query in shapes(365, subject):
                timings = []
                for _ in range(5):
                    t = time.perf_counter()
                    page = await store.search(query)
                    timings.append((time.perf_counter() - t) * 1000)
                print(f"  {name:42s} {statistics.median(timings):8.2f} ms  {len(page.hits):3d} hits")
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    asyncio.run(run(parser.parse_args().entries))


if __name__ == "__main__":
    main()
