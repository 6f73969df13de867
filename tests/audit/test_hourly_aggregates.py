"""The hourly aggregates on every store: kept by the append transaction, equal to what the entries give, rebuilt
by the migration, and checked by ``audit verify`` (a changed count is named)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.audit import AccessLog, AccessRecord, SqliteAccessLog
from gateway.audit.aggregates import BUCKETS_MS, HourlyRow, entry_deltas, hour_of, quantile, record_deltas
from gateway.audit.sqlite.schema import TRIGGERS
from gateway.audit.sqlite.store import verify_database
from tests.audit.store_support import StoreFactory

T0 = datetime(2026, 4, 15, 9, 0, tzinfo=UTC)


def rec(at: datetime, client: str | None, status: int = 200, outcome: str = "answered", latency: float = 30.0,
        sources: tuple[tuple[str, str], ...] = (), detail: dict[str, object] | None = None) -> AccessRecord:
    return AccessRecord(time=at.isoformat(timespec="microseconds"), request_id=f"r{at.timestamp()}",
                        method="POST", path="/v1/verifications", status=status, outcome=outcome, latency_ms=latency,
                        client=client, purpose="asd.eligibility" if client else None, sources=sources,
                        detail=detail or {})


def fixtures() -> list[AccessRecord]:
    """Two hours of a client with sources (one failing), refusals, and aggregated anonymous refusals."""
    out = []
    for i in range(10):  # hour 0: 10 answered, 3 ms .. 120 ms, two sources
        out.append(rec(T0 + timedelta(minutes=i), "anss.asd", latency=3.0 + 13 * i,
                       sources=(("civil_registry", "ok"), ("education", "timeout" if i == 0 else "ok")),
                       detail={"source_latency_ms": {"civil_registry": 4.0, "education": 40.0 + i}}))
    out.append(rec(T0 + timedelta(minutes=20), "anss.asd", 403, "forbidden_purpose", 1.0))
    out.append(rec(T0 + timedelta(minutes=30), None, 401, "invalid_assertion", 1.0))
    out.append(rec(T0 + timedelta(minutes=40), None, 429, "refusals_aggregated", 0.0, detail={"count": 250}))
    out.append(rec(T0 + timedelta(hours=1, minutes=5), "anss.asd", 502, "source_unavailable", 2000.0))
    return out


def by_key(rows: list[HourlyRow]) -> dict[tuple[object, ...], HourlyRow]:
    return {(r.hour - hour_of(T0), r.client, r.outcome, r.source): r for r in rows}


async def test_appends_keep_the_hourly_rows(store_factory: StoreFactory) -> None:
    store = await store_factory()
    for record in fixtures():
        await store.append(record)
    rows = by_key(await store.hourly(T0, T0 + timedelta(hours=2)))
    assert set(rows) == {(0, "anss.asd", "answered", None), (0, "anss.asd", "forbidden_purpose", None),
                         (0, None, "invalid_assertion", None), (0, None, "refusals_aggregated", None),
                         (1, "anss.asd", "source_unavailable", None)}
    answered = rows[0, "anss.asd", "answered", None]
    assert (answered.entries, answered.requests, answered.refused, answered.errors) == (10, 10, 0, 0)
    assert sum(answered.latency) == 10 and answered.latency[0] == 1  # 3 ms: the first bucket
    aggregated = rows[0, None, "refusals_aggregated", None]
    assert (aggregated.entries, aggregated.requests, aggregated.refused) == (1, 250, 250), "counted by its count"
    assert sum(aggregated.latency) == 0, "aggregated refusals have no latency of their own"
    assert rows[0, None, "invalid_assertion", None].refused == 1
    assert rows[1, "anss.asd", "source_unavailable", None].errors == 1
    sources = by_key(await store.hourly(T0, T0 + timedelta(hours=2), sources=True))
    education = sources[0, "anss.asd", "answered", "education"]
    assert (education.entries, education.errors) == (10, 1)
    assert education.latency[BUCKETS_MS.index(50.0)] == 10  # 40..49 ms
    assert sources[0, "anss.asd", "answered", "civil_registry"].errors == 0
    assert by_key(await store.hourly(T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=1))).keys() == {
        (1, "anss.asd", "source_unavailable", None)}, "only the hours asked"
    assert await store.verify() is None


async def test_concurrent_appends_from_two_stores_add_up(store_factory: StoreFactory) -> None:
    first, second = await store_factory(), await store_factory()
    await asyncio.gather(*(s.append(rec(T0 + timedelta(seconds=i), "anss.asd"))
                           for i in range(200) for s in ((first, second)[i % 2],)))
    [row] = await first.hourly(T0, T0 + timedelta(hours=1))
    assert row.entries == 200
    assert await second.verify() is None


def test_record_and_entry_bytes_give_the_same_deltas() -> None:
    for record in fixtures():
        assert record_deltas(record) == entry_deltas(record.canonical())


def test_quantiles_interpolate_within_their_bucket() -> None:
    histogram = [0] * len(BUCKETS_MS)
    histogram[BUCKETS_MS.index(50.0)] = 98  # 25..50 ms
    histogram[BUCKETS_MS.index(1000.0)] = 2  # 500..1000 ms
    assert quantile(histogram, 0.5) == pytest.approx(25 + 25 * 50 / 98)
    assert quantile(histogram, 0.99) == pytest.approx(750.0)
    assert quantile([0] * len(BUCKETS_MS), 0.5) is None


# --- SQLite: the migration and the check ----------------------------------------------------------------------------


async def _filled(path: Path) -> None:
    store = SqliteAccessLog(path)
    await store.open()
    try:
        for record in fixtures():
            await store.append(record)
    finally:
        await store.close()


def _sql(path: Path, *statements: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND "
                                    "name = 'meta_no_update'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        found: list[tuple[object, ...]] = []
        for statement in statements:
            found = conn.execute(statement).fetchall()
        conn.execute(next(t for t in TRIGGERS if "meta_no_update" in t))
        return found
    finally:
        conn.close()


async def test_a_v5_file_gains_its_aggregates_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "access-log.sqlite3"
    await _filled(path)
    appended = _sql(path, "SELECT * FROM access_hourly ORDER BY 1, 2, 3, 4, 5")
    _sql(path, "DROP TABLE access_hourly", "UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    assert verify_database(path) is None, "a v5 file verifies as it is"
    store = SqliteAccessLog(path)
    await store.open()
    await store.close()
    assert _sql(path, "SELECT * FROM access_hourly ORDER BY 1, 2, 3, 4, 5") == appended, "rebuilt from the entries"
    assert verify_database(path) is None


async def test_verify_names_aggregates_that_do_not_add_up(tmp_path: Path) -> None:
    path = tmp_path / "access-log.sqlite3"
    await _filled(path)
    _sql(path, "UPDATE access_hourly SET entries = entries + 5 WHERE outcome = 'source_unavailable'")
    found = verify_database(path)
    assert found is not None and "hourly aggregates" in found.reason and found.index == len(fixtures()) - 1
    _sql(path, "UPDATE access_hourly SET entries = entries - 5 WHERE outcome = 'source_unavailable'",
         "INSERT INTO access_hourly VALUES (1, 'x', 'y', 'z', '', 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)")
    found = verify_database(path)
    assert found is not None and "hourly aggregates" in found.reason, "a row no entry accounts for"


async def test_pruned_hours_keep_their_counts(store_factory: StoreFactory) -> None:
    store: AccessLog = await store_factory()
    for record in fixtures():
        await store.append(record)
    from tests.audit.store_support import KEY, LOG_ID
    await store.issue_tree_head(KEY, LOG_ID)
    assert await store.prune(T0 + timedelta(hours=1)) == len(fixtures()) - 1
    assert sum(r.entries for r in await store.hourly(T0, T0 + timedelta(hours=2))) == len(fixtures())
    assert await store.verify() is None


async def test_a_version_2_postgres_schema_gains_its_aggregates_when_opened() -> None:
    from gateway.audit.postgres.store import PostgresAccessLog
    from gateway.audit.postgres.tree import verify_postgres
    from tests.audit.pg_support import dba, fresh_schema_async

    async with fresh_schema_async() as target:
        store = PostgresAccessLog(target)
        await store.open()
        try:
            for record in fixtures():
                await store.append(record)
            appended = sorted(await store.hourly(T0, T0 + timedelta(hours=2)), key=repr)
        finally:
            await store.close()
        dba(target, "DROP TABLE access_hourly", "UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        assert await asyncio.to_thread(verify_postgres, target) is None, "a version 3 schema verifies as it is"
        store = PostgresAccessLog(target)
        await store.open()
        try:
            assert sorted(await store.hourly(T0, T0 + timedelta(hours=2)), key=repr) == appended
            assert await store.verify() is None
        finally:
            await store.close()
        dba(target, "UPDATE access_hourly SET errors = errors + 1 WHERE source = 'education'")
        found = await asyncio.to_thread(verify_postgres, target)
        assert found is not None and "hourly aggregates" in found.reason and found.index == 0
