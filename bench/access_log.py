"""Append throughput of the access log (the Merkle tree log), in entries per second, on SQLite or PostgreSQL.
Printed, never asserted.

Appends full-size entries (like a verification's: client, purpose, legal basis, five checks, four sources,
digests) to a fresh log: one at a time (each append waits for its commit), then with 64 appends in flight
(group commit), then from two stores on the same log at once (two processes' worth of contention: the same
SQLite file, or the same PostgreSQL schema, where both take turns on the log's advisory lock). Also times a
signed tree head, an inclusion proof, a full verification and an export.

    python -m bench.access_log [--store sqlite|postgres] [--entries 5000] [--concurrency 64]

With ``--store postgres`` the log goes to a fresh schema (dropped after) of the database named by
``--dsn``, else ``$ANSS_GATEWAY_DATABASE_DSN``, else ``postgresql://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from gateway.audit import AccessLog, AccessRecord, SqliteAccessLog
from gateway.config.settings import DSN_ENV
from gateway.crypto import keys
from gateway.federation.checks.registry import builtin
from gateway.stores.postgres import PostgresTarget

LOG_ID = "anss-gateway.access"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def record(i: int) -> AccessRecord:
    return AccessRecord(
        time="2026-11-23T10:00:00.123456+00:00", request_id=uuid.uuid4().hex, method="POST",
        path="/v1/verifications", status=200, outcome="answered", latency_ms=41.237, client="anss.asd",
        purpose="asd.eligibility", legal_basis="Loi n° 58-23 relative aux régimes de soutien social direct",
        case_ref=f"DOSSIER-{i:08d}", checks=builtin().names,
        subject=uuid.uuid4().hex * 2, sources=(("civil_registry", "ok"), ("education", "ok"), ("health", "ok"),
                                               ("employment", "ok")),
        request_sha256=uuid.uuid4().hex * 2, response_sha256=uuid.uuid4().hex * 2, detail={"jti": uuid.uuid4().hex},
    )


async def sequential(store: AccessLog, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        await store.append(record(i))
    return n / (time.perf_counter() - started)


async def concurrent(stores: list[AccessLog], n: int, concurrency: int) -> float:
    counter = iter(range(n))

    async def worker(store: AccessLog) -> None:
        for i in counter:
            await store.append(record(i))

    started = time.perf_counter()
    await asyncio.gather(*(worker(stores[w % len(stores)]) for w in range(concurrency)))
    return n / (time.perf_counter() - started)


@asynccontextmanager
async def fresh_log(kind: str, dsn: str) -> AsyncIterator[tuple[str, Callable[[], AccessLog]]]:
    """(a description, a factory of stores on one fresh log) — a temporary file, or a schema dropped after."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="anss-bench-log-") as tmp:
            path = Path(tmp) / "access-log.sqlite3"
            yield "SQLite, synchronous=FULL, WAL", lambda: SqliteAccessLog(path)
        return
    from psycopg import sql

    from gateway.audit.postgres.store import PostgresAccessLog

    target = PostgresTarget(dsn, f"bench_{uuid.uuid4().hex[:12]}")
    try:
        yield f"{target.describe()}, synchronous_commit as configured", lambda: PostgresAccessLog(target)
    finally:
        with target.connect_sync() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target.schema)))


async def run(kind: str, dsn: str, entries: int, concurrency: int) -> None:
    key = keys.generate()
    async with fresh_log(kind, dsn) as (where, new_store):
        store, other = new_store(), new_store()
        await store.open()
        await other.open()
        try:
            seq = await sequential(store, max(entries // 5, 200))
            conc = await concurrent([store], entries, concurrency)
            two = await concurrent([store, other], entries, concurrency)
            print(f"access log on {where}, {len(record(0).canonical())}-byte entries")
            print(f"  sequential appends (1 in flight)        {seq:>9,.0f} entries/s")
            print(f"  concurrent appends ({concurrency} in flight)       {conc:>9,.0f} entries/s")
            print(f"  two stores on one log ({concurrency} in flight)   {two:>9,.0f} entries/s")

            timings = []
            for _ in range(20):
                await store.append(record(0))
                started = time.perf_counter()
                await store.issue_tree_head(key, LOG_ID)
                timings.append((time.perf_counter() - started) * 1000)
            size = await store.count()
            print(f"  sign a tree head                        {statistics.median(timings):>9.2f} ms (median)")
            started = time.perf_counter()
            for i in range(0, size, max(size // 200, 1)):
                await store.inclusion_proof(i, size)
            per_proof = (time.perf_counter() - started) * 1000 / len(range(0, size, max(size // 200, 1)))
            print(f"  inclusion proof ({size:,} entries)       {per_proof:>9.2f} ms")
            started = time.perf_counter()
            assert await store.verify({key.kid: key.public}) is None
            print(f"  full verification                       {size / (time.perf_counter() - started):>9,.0f} "
                  "entries/s")
            out = io.StringIO()
            started = time.perf_counter()
            await store.export(out)
            print(f"  export with proofs                      {size / (time.perf_counter() - started):>9,.0f} "
                  f"entries/s ({len(out.getvalue()) / size:,.0f} bytes per entry)")
        finally:
            await other.close()
            await store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--dsn", help=f"PostgreSQL DSN (default: ${DSN_ENV}, else the local test database)")
    p.add_argument("--entries", type=int, default=5000, help="entries per concurrent run (default 5000)")
    p.add_argument("--concurrency", type=int, default=64)
    opts = p.parse_args()
    asyncio.run(run(opts.store, opts.dsn or os.environ.get(DSN_ENV) or DEFAULT_DSN, opts.entries, opts.concurrency))


if __name__ == "__main__":
    main()
