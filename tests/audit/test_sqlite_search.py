"""The SQLite search index: built by the v2 → v3 migration, kept by its triggers, and used by every query shape.

The search semantics are the contract (``test_search_contract.py``); this file checks what is SQLite's own:
the migration of a v2 file, the triggers of the index tables, and that each query shape runs as a bounded
index scan (``EXPLAIN QUERY PLAN``: no full scan of the log, no sort of the matches), which is what keeps a
search over a million entries at a page's cost (``bench/access_log_search.py`` measures it).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.audit import SqliteAccessLog
from gateway.audit.query import LogQuery
from gateway.audit.search_index import IndexFields, index_fields, record_fields
from gateway.audit.sqlite.schema import SCHEMA_VERSION, TRIGGERS
from gateway.audit.sqlite.search import INDEX_TABLES, search
from gateway.audit.sqlite.store import verify_database
from gateway.crypto import keys
from tests.audit.test_search_contract import record

KEY = keys.generate()
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
INDEX_NAMES = ("access_index", "access_index_checks", "access_index_sources", "access_index_persons")


async def _log(path: Path, n: int, *, prune_before: datetime | None = None) -> None:
    store = SqliteAccessLog(path)
    await store.open()
    try:
        for i in range(n):
            await store.append(record(i))
        await store.issue_tree_head(KEY, "anss-gateway.access")
        if prune_before is not None:
            await store.prune(prune_before)
    finally:
        await store.close()


def _as_v2(path: Path) -> None:
    """Turn a v3 file into exactly what the previous release wrote: the same tree, no index."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND "
                                    "(tbl_name LIKE 'access_index%' OR name = 'meta_no_update')").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        for table in INDEX_NAMES:
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        conn.execute(next(t for t in TRIGGERS if "meta_no_update" in t))
    finally:
        conn.close()


def _sql(path: Path, statement: str) -> object:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(statement).fetchall()
    finally:
        conn.close()


async def test_a_v2_log_gains_its_index_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "access-log.sqlite3"
    await _log(path, 150, prune_before=T0 + timedelta(minutes=20))  # entries 0..19 pruned
    _as_v2(path)
    tree_before = _sql(path, "SELECT idx, entry, leaf_hash, tree_root FROM access_log ORDER BY idx")
    assert _sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]
    assert verify_database(path) is None, "a v2 file verifies as it is"
    store = SqliteAccessLog(path)
    await store.open()
    try:
        everything = await store.search(LogQuery(limit=200))
        assert [h.index for h in everything.hits] == list(range(149, 19, -1)), "kept entries only"
        got = await store.search(LogQuery(client="cnss.amo", check="identity", since=T0 + timedelta(minutes=100)))
        assert [h.index for h in got.hits] == [i for i in range(149, 99, -1) if i % 3 == 1 and i % 4 in (0, 1)]
        assert await store.append(record(150)) == 150
        assert (await store.search(LogQuery(case_ref="CASE-0015"))).hits[0].index == 150
        assert await store.verify() is None
    finally:
        await store.close()
    assert _sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert _sql(path, "SELECT idx, entry, leaf_hash, tree_root FROM access_log WHERE idx < 150 ORDER BY idx") \
        == tree_before, "the tree is not touched"
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _sql(path, f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    assert verify_database(path) is None


async def test_the_index_of_a_kept_entry_cannot_be_removed_or_changed(tmp_path: Path) -> None:
    path = tmp_path / "access-log.sqlite3"
    await _log(path, 10)
    for statement in ("DELETE FROM access_index WHERE idx = 3", "UPDATE access_index SET client = 'x' WHERE idx = 3",
                      "DELETE FROM access_index_checks WHERE idx = 4", "DELETE FROM access_index_sources",
                      "UPDATE access_index_checks SET name = 'x'"):
        with pytest.raises(sqlite3.IntegrityError, match="index"):
            _sql(path, statement)


async def test_pruning_removes_the_index_rows_with_the_payload(tmp_path: Path) -> None:
    path = tmp_path / "access-log.sqlite3"
    await _log(path, 40, prune_before=T0 + timedelta(minutes=15))
    for table in INDEX_NAMES:
        assert _sql(path, f"SELECT COUNT(*) FROM {table} WHERE idx < 15") == [(0,)], table
        assert _sql(path, f"SELECT COUNT(*) FROM {table} WHERE idx >= 15") != [(0,)], table
    assert _sql(path, "SELECT MIN(idx) FROM access_index") == [(15,)]


async def test_every_query_shape_is_a_bounded_index_scan(tmp_path: Path) -> None:
    path = tmp_path / "access-log.sqlite3"
    await _log(path, 50)
    conn = sqlite3.connect(path)
    since, until = T0 + timedelta(minutes=5), T0 + timedelta(minutes=9)
    shapes = [
        LogQuery(), LogQuery(cursor=20), LogQuery(client="anss.asd"), LogQuery(purpose="amo.coverage"),
        LogQuery(case_ref="CASE-0001"), LogQuery(outcome="partial"), LogQuery(subject=f"{1:064x}"),
        LogQuery(check="identity"), LogQuery(source="education"), LogQuery(check="identity", source="education"),
        LogQuery(since=since), LogQuery(until=until), LogQuery(since=since, until=until, cursor=8),
        LogQuery(client="anss.asd", check="identity", since=since, until=until),
        LogQuery(subject=f"{1:064x}", source="education", outcome="answered"),
    ]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)  # the statement as run, its values bound
    try:
        for query in shapes:
            statements.clear()
            search(conn, query)
            assert len(statements) == 1, query
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statements[0]}")]
            assert not any("TEMP B-TREE" in step for step in plan), (query, plan)
            driver = plan[0]
            assert driver.startswith("SEARCH") or driver == "SCAN i", (query, plan)
            if driver == "SCAN i":  # only when nothing narrows it: newest first, stopping after a page
                assert query.since is None and query.until is None and query.cursor is None
                assert not any(getattr(query, f) for f in ("client", "purpose", "case_ref", "outcome", "subject",
                                                           "check", "source")), (query, plan)
            assert all(step.startswith("SEARCH") for step in plan[1:] if not step.startswith(
                ("SCALAR SUBQUERY", "CORRELATED SCALAR SUBQUERY"))), (query, plan)
    finally:
        conn.close()


async def test_entries_without_a_client_are_found_through_the_client_index(tmp_path: Path) -> None:
    path = tmp_path / "access-log.sqlite3"
    await _log(path, 50)
    conn = sqlite3.connect(path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        for query in (LogQuery(no_client=True), LogQuery(no_client=True, cursor=20),
                      LogQuery(no_client=True, since=T0 + timedelta(minutes=5))):
            statements.clear()
            search(conn, query)
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statements[0]}")]
            assert plan[0].startswith("SEARCH i USING") and "access_index_client (client=?" in plan[0], plan
            assert not any("TEMP B-TREE" in step for step in plan), plan
    finally:
        conn.close()


def test_the_index_tables_are_outside_the_tree() -> None:
    assert all("access_index" in statement for statement in INDEX_TABLES)
    assert not any("access_index" in statement for statement in TRIGGERS)


def test_the_fields_taken_from_a_record_are_the_fields_of_its_bytes() -> None:
    samples = [record(i) for i in range(12)] + [
        record(0, client=None, purpose=None, case_ref=None, subject=None, checks=(), sources=()),
        record(1, checks=("identity", "identity"), sources=(("health", "ok"), ("health", "error"))),
        record(2, time="not a time"), record(3, time="2026-11-23T09:00:00+01:00"),
    ]
    for sample in samples:
        assert record_fields(sample) == index_fields(sample.canonical()), sample
    assert index_fields(b"[1, 2]") == index_fields(b"not json") == IndexFields(None, None, None, None, None, None,
                                                                              (), ())
    odd = index_fields(b'{"client": 7, "checks": "identity", "sources": [{"name": 3}, "x", {"name": "health"}]}')
    assert (odd.client, odd.checks, odd.sources) == (None, (), ("health",)), "a member of the wrong type is skipped"


def _as_v3(path: Path) -> None:
    """Turn a v4 file into what the previous release wrote: the index without its co-subjects' table."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND "
                                    "(tbl_name = 'access_index_persons' OR name = 'meta_no_update')").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP TABLE access_index_persons")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        conn.execute(next(t for t in TRIGGERS if "meta_no_update" in t))
    finally:
        conn.close()


async def test_a_v3_log_gains_its_co_subjects_table_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "access-log.sqlite3"
    await _log(path, 60, prune_before=T0 + timedelta(minutes=10))  # entries 0..9 pruned
    _as_v3(path)
    tree_before = _sql(path, "SELECT idx, entry, leaf_hash, tree_root FROM access_log ORDER BY idx")
    index_before = _sql(path, "SELECT * FROM access_index ORDER BY idx")
    found = verify_database(path)
    assert found is not None and "co-subject" in found.reason, "a v3 index lacks what these entries name"
    store = SqliteAccessLog(path)
    await store.open()
    try:
        got = await store.search(LogQuery(person=f"{101:064x}", limit=200))
        assert [h.index for h in got.hits] == [i for i in range(59, 9, -1) if i % 5 == 2]
        assert await store.verify() is None
    finally:
        await store.close()
    assert _sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert _sql(path, "SELECT idx, entry, leaf_hash, tree_root FROM access_log ORDER BY idx") == tree_before
    assert _sql(path, "SELECT * FROM access_index ORDER BY idx") == index_before, "the rest of the index untouched"
    assert _sql(path, "SELECT COUNT(*) FROM access_index_persons WHERE idx < 10") == [(0,)], "pruned: not indexed"
    with pytest.raises(sqlite3.IntegrityError, match="index"):
        _sql(path, "DELETE FROM access_index_persons WHERE idx = 12")
    assert verify_database(path) is None
