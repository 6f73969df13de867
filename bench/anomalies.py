"""The officers' anomaly view at scale: a log of N entries (1 000 000 by default) built quickly, then the view
from the hourly aggregates timed (and, with ``--scan``, the full scan it replaces). Printed, never asserted.

The log holds 21 clients over 15 days in working hours (each client's volume its own), refusals without a client
and a few anomalies in the last 24 hours (a volume spike, night work, a burst of refusals, a citizen looked up by
three clients, aggregated anonymous refusals). It is written through the store's own group commit
(``_commit``: the tree, the search index and the aggregates, in batches of ``--batch`` entries), so the file
is exactly what appending would give, without an event-loop round trip per entry.

    python -m bench.anomalies [--store sqlite|postgres] [--entries 1000000] [--scan] [--keep PATH]

With ``--store postgres`` the log goes to a fresh schema of the database named by ``--dsn`` (else
``$ANSS_GATEWAY_DATABASE_DSN``, else the local test database), dropped after. ``--keep PATH`` (SQLite) keeps
the built file, and reuses it when it exists.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.api.anomalies import scan
from gateway.audit import AccessLog, AccessRecord, SqliteAccessLog
from gateway.audit.aggregates import record_deltas
from gateway.audit.anomaly_view import view
from gateway.audit.postgres.store import PostgresAccessLog
from gateway.audit.search_index import record_fields
from gateway.config.settings import DSN_ENV, AnomalySettings
from gateway.stores.postgres import PostgresTarget

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a Wednesday, 16:00 in Casablanca
CLIENTS = (*(f"agency{i:02d}.app" for i in range(20)), "dgssi.officer")
SOURCES = (("civil_registry", "ok"), ("education", "ok"), ("health", "ok"), ("employment", "ok"))


def records(n: int, seed: int = 11, clients: tuple[str, ...] = CLIENTS, now: datetime = NOW
            ) -> Iterator[AccessRecord]:
    """About ``n`` entries of ``clients`` (at least 10) over the 15 days before ``now``, oldest first, with the
    anomalies of the last day."""
    rng = random.Random(seed)
    CLIENTS, NOW = clients, now  # (the module's defaults, shadowed)
    weights = [rng.uniform(0.3, 2.0) for _ in CLIENTS]
    total = sum(weights)
    per_day = [max(1, int(n * w / total / 15)) for w in weights]
    start = (NOW - timedelta(days=15)).replace(hour=0)
    for day in range(15):
        moments: list[tuple[float, int]] = []
        for c, count in enumerate(per_day):
            moments += [(rng.uniform(8 * 3600, 17 * 3600), c) for _ in range(count)]
        moments += [(rng.uniform(0, 86400), -1) for _ in range(n // 300)]  # refusals without a client
        moments.sort()
        for seconds, c in moments:
            at = start + timedelta(days=day, seconds=seconds)
            if at > NOW:
                break
            yield _record(rng, at, CLIENTS[c] if c >= 0 else None)
    # the anomalies of the last day
    for i in range(3000):  # a spike of one client
        yield _record(rng, NOW - timedelta(hours=4) + timedelta(seconds=i), CLIENTS[3])
    for i in range(50):
        yield _record(rng, NOW.replace(hour=1) + timedelta(minutes=i), CLIENTS[4])
    for i in range(30):
        yield _record(rng, NOW - timedelta(hours=2) + timedelta(seconds=5 * i), CLIENTS[5], 403, "forbidden_purpose")
    for i, c in enumerate(CLIENTS[6:10]):
        yield _record(rng, NOW - timedelta(hours=1, minutes=i), c, subject="f" * 64)
    yield AccessRecord(time=(NOW - timedelta(minutes=30)).isoformat(timespec="microseconds"), request_id="agg",
                       method="*", path="*", status=429, outcome="refusals_aggregated", latency_ms=0.0,
                       detail={"code": "invalid_assertion", "count": 5000, "window_s": 60})


def _record(rng: random.Random, at: datetime, client: str | None, status: int = 200, outcome: str = "answered",
            subject: str | None = None) -> AccessRecord:
    if client is None:
        return AccessRecord(time=at.isoformat(timespec="microseconds"), request_id=f"{rng.getrandbits(64):016x}",
                            method="POST", path="/v1/verifications", status=401, outcome="invalid_assertion",
                            latency_ms=rng.uniform(0.5, 3))
    return AccessRecord(
        time=at.isoformat(timespec="microseconds"), request_id=f"{rng.getrandbits(64):016x}", method="POST",
        path="/v1/verifications", status=status, outcome=outcome, latency_ms=rng.lognormvariate(3.5, 0.6),
        client=client, purpose="asd.eligibility", case_ref=f"D-{rng.getrandbits(32):08x}",
        checks=("identity", "household", "schooling"), subject=subject or f"{rng.getrandbits(256):064x}",
        sources=SOURCES if status == 200 else (),
        detail={"source_latency_ms": {name: round(rng.lognormvariate(3, 0.5), 1) for name, _ in SOURCES}}
        if status == 200 else {})


async def build(store: AccessLog, n: int, batch: int, clients: tuple[str, ...] = CLIENTS, now: datetime = NOW) -> int:
    """Write the entries through the store's own group commit, ``batch`` at a time."""
    pending = []
    written = 0

    async def flush() -> None:
        if isinstance(store, SqliteAccessLog):
            await asyncio.get_running_loop().run_in_executor(store._writer, store._commit, pending)
        else:
            assert isinstance(store, PostgresAccessLog)
            await store._commit(pending)

    for record in records(n, clients=clients, now=now):
        pending.append((record.canonical(), record_fields(record), record_deltas(record)))
        if len(pending) >= batch:
            await flush()
            written += len(pending)
            pending = []
    if pending:
        await flush()
        written += len(pending)
    return written


@asynccontextmanager
async def opened(kind: str, dsn: str, keep: Path | None) -> AsyncIterator[tuple[str, AccessLog]]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="anss-bench-anomalies-") as tmp:
            path = keep or Path(tmp) / "access-log.sqlite3"
            store = SqliteAccessLog(path)
            await store.open()
            try:
                yield f"SQLite {path}", store
            finally:
                await store.close()
        return
    import uuid

    from psycopg import sql

    target = PostgresTarget(dsn, f"bench_{uuid.uuid4().hex[:12]}")
    store = PostgresAccessLog(target)
    await store.open()
    try:
        yield target.describe(), store
    finally:
        await store.close()
        with target.connect_sync() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target.schema)))


async def run(kind: str, dsn: str, n: int, batch: int, rounds: int, with_scan: bool, keep: Path | None) -> None:
    settings = AnomalySettings()
    async with opened(kind, dsn, keep) as (where, store):
        size = await store.count()
        if size == 0:
            started = time.perf_counter()
            size = await build(store, n, batch)
            print(f"built {size:,} entries on {where} in {time.perf_counter() - started:,.0f} s")
        else:
            print(f"reusing {size:,} entries on {where}")
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            found = await view(store, settings, CLIENTS, NOW)
            timings.append(time.perf_counter() - started)
        print(f"  anomaly view (hourly aggregates)     {statistics.median(timings) * 1000:>8,.0f} ms median of "
              f"{rounds} (min {min(timings) * 1000:,.0f}, max {max(timings) * 1000:,.0f}); {len(found.flags)} flags "
              f"({', '.join(sorted({f.kind.value for f in found.flags}))}), {found.hourly_rows:,} hourly rows, "
              f"{found.scanned:,} entries read")
        if with_scan:
            started = time.perf_counter()
            full = await scan(store, settings, CLIENTS, NOW)
            print(f"  full scan (the reference)            {(time.perf_counter() - started) * 1000:>8,.0f} ms; "
                  f"{len(full.flags)} flags, {full.scanned:,} entries read, complete={full.complete}")
            same = [f.to_json() for f in full.flags] == [f.to_json() for f in found.flags]
            print(f"  same flags as the full scan: {same}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--dsn", help=f"PostgreSQL DSN (default: ${DSN_ENV}, else the local test database)")
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=5000, help="entries per append transaction while building")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--scan", action="store_true", help="also time the full scan and compare the flags")
    p.add_argument("--keep", type=Path, help="SQLite: keep (and reuse) the built file at this path")
    o = p.parse_args()
    asyncio.run(run(o.store, o.dsn or os.environ.get(DSN_ENV) or DEFAULT_DSN, o.entries, o.batch, o.rounds,
                    o.scan, o.keep))


if __name__ == "__main__":
    main()
