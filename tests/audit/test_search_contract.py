"""The access-log search contract: what every store's ``search(LogQuery) -> LogPage`` must answer.

Every test takes ``store_factory`` and runs once per implementation, like ``test_store_contract.py``:
``await store_factory()`` opens one more instance on the *same* log (another process on the same SQLite file,
another replica on the same PostgreSQL database), each test gets a fresh, empty log, and every instance is
closed after the test. To add an implementation: add it to ``tests/audit/store_support.py``, then make this
file pass unchanged.

The semantics (``gateway/audit/query.py``): newest first by index; ``cursor`` is the index to continue below;
filters are ANDed; ``check`` matches when the entry's ``checks`` contains it, ``source`` when its ``sources``
name it; ``since`` is inclusive and ``until`` exclusive on the entry's ``time``; pruned entries never come
back; a hit is the entry's own bytes, decoded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.audit import AccessLog, AccessRecord
from gateway.audit.query import MAX_PAGE, LogHit, LogQuery
from tests.audit.store_support import KEY, LOG_ID, StoreFactory

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


CLIENTS = ("anss.asd", "cnss.amo", "rsu.registry")
PURPOSES = ("asd.eligibility", "amo.coverage")
OUTCOMES = ("answered", "answered", "consent_missing", "partial")
CHECK_SETS = (("identity",), ("identity", "household"), ("schooling",), ())
SOURCE_SETS = ((("civil_registry", "ok"),), (("civil_registry", "ok"), ("education", "timeout")), ())


PERSON_SETS: tuple[tuple[str, ...], ...] = ((), (f"{100:064x}",), (f"{100:064x}", f"{101:064x}"), (),
                                           (f"{102:064x}",))


def record(i: int, at: datetime | None = None, **overrides: object) -> AccessRecord:
    """Entry ``i`` of the standard log: every field cycles with its own period, so filters combine."""
    values: dict[str, object] = {
        "time": (at or T0 + timedelta(minutes=i)).isoformat(timespec="microseconds"),
        "request_id": f"req-{i:05d}", "method": "POST", "path": "/v1/verifications", "status": 200,
        "outcome": OUTCOMES[i % 4], "latency_ms": 1.5, "client": CLIENTS[i % 3], "purpose": PURPOSES[i % 2],
        "case_ref": f"CASE-{i // 10:04d}", "checks": CHECK_SETS[i % 4], "subject": f"{i % 7:064x}",
        "sources": SOURCE_SETS[i % 3], "co_subjects": PERSON_SETS[i % 5],
    }
    values.update(overrides)
    return AccessRecord(**values)  # type: ignore[arg-type]


async def filled(store: AccessLog, n: int) -> list[AccessRecord]:
    records = [record(i) for i in range(n)]
    for i, rec in enumerate(records):
        assert await store.append(rec) == i
    return records


async def everything(store: AccessLog, **filters: object) -> list[LogHit]:
    """All pages of a query, asserting the paging contract on the way (no duplicates, strictly descending)."""
    hits: list[LogHit] = []
    cursor: int | None = None
    for _ in range(1000):
        page = await store.search(LogQuery(cursor=cursor, **filters))  # type: ignore[arg-type]
        hits += page.hits
        if page.next_cursor is None:
            break
        assert page.hits and page.next_cursor == page.hits[-1].index, "the cursor continues below the last hit"
        cursor = page.next_cursor
    indices = [h.index for h in hits]
    assert indices == sorted(set(indices), reverse=True), "newest first, each entry once"
    return hits


def expected(records: list[AccessRecord], keep: Callable[[AccessRecord], bool]) -> list[int]:
    return [i for i in reversed(range(len(records))) if keep(records[i])]


# --- the basics ------------------------------------------------------------------------------------------------------


async def test_an_empty_log_has_no_hits(store_factory: StoreFactory) -> None:
    store = await store_factory()
    page = await store.search(LogQuery())
    assert page.hits == [] and page.next_cursor is None


async def test_hits_are_the_entries_newest_first_and_pages_reach_the_end(store_factory: StoreFactory) -> None:
    store = await store_factory()
    records = await filled(store, 230)
    first = await store.search(LogQuery(limit=100))
    assert [h.index for h in first.hits] == list(range(229, 129, -1))
    assert first.next_cursor == 130
    assert first.hits[0].entry == json.loads(records[229].canonical()), "the entry's own bytes, decoded"
    second = await store.search(LogQuery(limit=100, cursor=first.next_cursor))
    assert [h.index for h in second.hits] == list(range(129, 29, -1)) and second.next_cursor == 30
    last = await store.search(LogQuery(limit=100, cursor=second.next_cursor))
    assert [h.index for h in last.hits] == list(range(29, -1, -1)) and last.next_cursor is None
    exact = await store.search(LogQuery(limit=30, cursor=30))
    assert len(exact.hits) == 30 and exact.next_cursor is None, "a page that ends the results says so"
    assert [h.index for h in await everything(store, limit=7)] == list(range(229, -1, -1))
    assert (await store.search(LogQuery(cursor=0))).hits == []
    beyond = await store.search(LogQuery(cursor=10_000, limit=3))
    assert [h.index for h in beyond.hits] == [229, 228, 227]


def test_page_size_is_bounded() -> None:
    for bad in (0, -1, MAX_PAGE + 1):
        with pytest.raises(ValueError, match="limit"):
            LogQuery(limit=bad)
    assert LogQuery(limit=MAX_PAGE).limit == MAX_PAGE


# --- every filter, alone and together ---------------------------------------------------------------------------------


async def test_each_field_filter_matches_exactly(store_factory: StoreFactory) -> None:
    store = await store_factory()
    records = await filled(store, 120)
    cases: list[tuple[dict[str, object], Callable[[AccessRecord], bool]]] = [
        ({"client": "cnss.amo"}, lambda r: r.client == "cnss.amo"),
        ({"purpose": "amo.coverage"}, lambda r: r.purpose == "amo.coverage"),
        ({"case_ref": "CASE-0007"}, lambda r: r.case_ref == "CASE-0007"),
        ({"outcome": "consent_missing"}, lambda r: r.outcome == "consent_missing"),
        ({"subject": f"{3:064x}"}, lambda r: r.subject == f"{3:064x}"),
        ({"check": "household"}, lambda r: "household" in r.checks),
        ({"check": "identity"}, lambda r: "identity" in r.checks),
        ({"source": "education"}, lambda r: any(n == "education" for n, _ in r.sources)),
        ({"source": "civil_registry"}, lambda r: any(n == "civil_registry" for n, _ in r.sources)),
        ({"person": f"{100:064x}"}, lambda r: f"{100:064x}" in r.co_subjects),
        ({"person": f"{102:064x}"}, lambda r: f"{102:064x}" in r.co_subjects),
    ]
    for filters, keep in cases:
        want = expected(records, keep)
        assert want, f"the standard log has entries for {filters}"
        assert [h.index for h in await everything(store, limit=9, **filters)] == want, filters


async def test_filters_are_anded(store_factory: StoreFactory) -> None:
    store = await store_factory()
    records = await filled(store, 150)
    cases: list[tuple[dict[str, object], Callable[[AccessRecord], bool]]] = [
        ({"client": "anss.asd", "purpose": "asd.eligibility"},
         lambda r: r.client == "anss.asd" and r.purpose == "asd.eligibility"),
        ({"check": "identity", "source": "education"},
         lambda r: "identity" in r.checks and any(n == "education" for n, _ in r.sources)),
        ({"client": "rsu.registry", "check": "household", "outcome": "answered"},
         lambda r: r.client == "rsu.registry" and "household" in r.checks and r.outcome == "answered"),
        ({"subject": f"{2:064x}", "source": "civil_registry", "since": T0 + timedelta(minutes=40),
          "until": T0 + timedelta(minutes=120)},
         lambda r: r.subject == f"{2:064x}" and bool(r.sources) and "08:40" <= r.time[11:16] < "10:00"),
        ({"client": "anss.asd", "case_ref": "CASE-0003", "check": "schooling", "source": "civil_registry"},
         lambda r: r.client == "anss.asd" and r.case_ref == "CASE-0003" and "schooling" in r.checks
         and bool(r.sources)),
    ]
    for filters, keep in cases:
        want = expected(records, keep)
        assert want, f"the standard log has entries for {filters}"
        assert [h.index for h in await everything(store, limit=4, **filters)] == want, filters
    assert (await store.search(LogQuery(client="anss.asd", purpose="amo.coverage", check="nothing"))).hits == []
    assert (await store.search(LogQuery(client="nobody"))).hits == []
    assert (await store.search(LogQuery(check="nothing"))).hits == []
    assert (await store.search(LogQuery(source="nowhere"))).hits == []


async def test_an_entry_without_a_field_never_matches_a_filter_on_it(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await store.append(record(0, client=None, purpose=None, case_ref=None, subject=None, checks=(), sources=()))
    await store.append(record(1, client="anss.asd", purpose="asd.eligibility", subject=f"{0:064x}",
                              checks=("identity", "identity"), sources=(("health", "ok"), ("health", "error"))))
    for query in (LogQuery(client="anss.asd"), LogQuery(purpose="asd.eligibility"), LogQuery(subject=f"{0:064x}"),
                  LogQuery(case_ref="CASE-0000")):
        assert [h.index for h in (await store.search(query)).hits] == [1], query
    assert [h.index for h in (await store.search(LogQuery(check="identity"))).hits] == [1], "once, not twice"
    assert [h.index for h in (await store.search(LogQuery(source="health"))).hits] == [1]


async def test_no_client_finds_exactly_the_entries_without_one(store_factory: StoreFactory) -> None:
    store = await store_factory()
    records = [record(i, client=None if i % 5 == 2 else CLIENTS[i % 3], outcome="unauthenticated" if i % 5 == 2
                      else OUTCOMES[i % 4]) for i in range(60)]
    for i, rec in enumerate(records):
        assert await store.append(rec) == i
    want = expected(records, lambda r: r.client is None)
    assert len(want) == 12
    assert [h.index for h in await everything(store, no_client=True, limit=3)] == want
    assert all(not h.entry.get("client") for h in await everything(store, no_client=True))
    since = T0 + timedelta(minutes=20)
    assert [h.index for h in await everything(store, no_client=True, since=since, check="identity", limit=2)] == \
        expected(records, lambda r: r.client is None and r.time >= since.isoformat() and "identity" in r.checks)
    below = await store.search(LogQuery(no_client=True, cursor=30, limit=MAX_PAGE))
    assert [h.index for h in below.hits] == [i for i in want if i < 30] and below.next_cursor is None
    assert (await store.search(LogQuery(no_client=True, outcome="answered"))).hits == []
    with pytest.raises(ValueError, match="client"):
        LogQuery(client="anss.asd", no_client=True)


async def test_a_filter_value_is_matched_as_is(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await store.append(record(0, case_ref="DOSSIER-%_1"))
    await store.append(record(1, case_ref="DOSSIER-A-1"))
    await store.append(record(2, case_ref="dossier-a-1"))
    await store.append(record(3, case_ref="DOSSIER-A-1' OR '1'='1"))
    for value, want in (("DOSSIER-%_1", [0]), ("DOSSIER-A-1", [1]), ("DOSSIER-A-1' OR '1'='1", [3]), ("%", [])):
        assert [h.index for h in (await store.search(LogQuery(case_ref=value))).hits] == want, value


# --- time ------------------------------------------------------------------------------------------------------------


async def test_time_range_since_inclusive_until_exclusive(store_factory: StoreFactory) -> None:
    store = await store_factory()
    records = await filled(store, 100)  # entry i at T0 + i minutes
    since, until = T0 + timedelta(minutes=20), T0 + timedelta(minutes=30)
    assert [h.index for h in await everything(store, since=since, until=until)] == list(range(29, 19, -1))
    assert [h.index for h in await everything(store, since=since, limit=11)] == list(range(99, 19, -1))
    assert [h.index for h in await everything(store, until=until, limit=11)] == list(range(29, -1, -1))
    assert (await store.search(LogQuery(since=T0 + timedelta(days=1)))).hits == []
    assert (await store.search(LogQuery(until=T0))).hits == []
    assert (await store.search(LogQuery(since=until, until=since))).hits == []
    naive = datetime(2026, 11, 23, 8, 20)  # naive times are UTC
    assert [h.index for h in (await store.search(LogQuery(since=naive, until=naive + timedelta(minutes=2)))).hits] \
        == [21, 20]
    casablanca = timezone(timedelta(hours=1))
    local = datetime(2026, 11, 23, 9, 20, tzinfo=casablanca)  # 08:20 UTC
    assert [h.index for h in (await store.search(LogQuery(since=local, until=local + timedelta(minutes=1)))).hits] \
        == [20]
    assert len(records) == 100


async def test_time_range_is_exact_when_entries_arrive_out_of_order(store_factory: StoreFactory) -> None:
    """Concurrent requests, replicas and clocks append entries slightly out of time order; a time range must
    still find exactly the entries whose own time is inside it, however far from the others they are."""
    store = await store_factory()
    offsets = [0, 5, 3, 9, 1, 10, 12, 11, 30, 4, 31, 32, 2, 33, -60, 34, 35, 200, 36, 37]  # minutes from T0
    times = [T0 + timedelta(minutes=m) for m in offsets]
    for i, at in enumerate(times):
        assert await store.append(record(i, at=at)) == i
    for since_m, until_m in ((0, 10), (3, 5), (-61, -59), (2, 3), (10, 31), (31, 36), (199, 201), (-100, 1000),
                             (4, 4), (36, 200), (5, 6)):
        since, until = T0 + timedelta(minutes=since_m), T0 + timedelta(minutes=until_m)
        want = [i for i in reversed(range(len(times))) if since <= times[i] < until]
        assert [h.index for h in await everything(store, since=since, until=until, limit=2)] == want, \
            (since_m, until_m)
        assert [h.index for h in await everything(store, until=until, limit=3)] == \
            [i for i in reversed(range(len(times))) if times[i] < until], until_m
        assert [h.index for h in await everything(store, since=since, limit=3)] == \
            [i for i in reversed(range(len(times))) if times[i] >= since], since_m


async def test_an_entry_with_other_time_notations_is_found_by_its_instant(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await store.append(record(0, at=datetime(2026, 11, 23, 9, 0, tzinfo=timezone(timedelta(hours=1)))))  # 08:00Z
    await store.append(record(1, time="2026-11-23T08:00:30Z"))
    await store.append(record(2, time="not a time"))
    found = await everything(store, since=T0, until=T0 + timedelta(minutes=1))
    assert [h.index for h in found] == [1, 0]
    assert [h.index for h in await everything(store)] == [2, 1, 0], "an entry without a time matches no range"


# --- retention, instances, concurrency --------------------------------------------------------------------------------


async def test_pruned_entries_are_not_returned(store_factory: StoreFactory) -> None:
    store = await store_factory()
    records = await filled(store, 90)  # entry i at T0 + i minutes
    await store.issue_tree_head(KEY, LOG_ID)
    assert await store.prune(T0 + timedelta(minutes=40)) == 40
    assert [h.index for h in await everything(store, limit=25)] == list(range(89, 39, -1))
    assert [h.index for h in await everything(store, client="anss.asd")] == \
        [i for i in range(89, 39, -1) if records[i].client == "anss.asd"]
    assert [h.index for h in await everything(store, check="identity", limit=5)] == \
        [i for i in range(89, 39, -1) if "identity" in records[i].checks]
    assert [h.index for h in await everything(store, source="civil_registry", limit=5)] == \
        [i for i in range(89, 39, -1) if records[i].sources]
    assert (await store.search(LogQuery(until=T0 + timedelta(minutes=40)))).hits == []
    assert (await store.search(LogQuery(case_ref="CASE-0001"))).hits == []
    assert [h.index for h in (await store.search(LogQuery(cursor=45))).hits] == [44, 43, 42, 41, 40]
    more = await store.append(record(90))
    assert (await store.search(LogQuery(limit=1))).hits[0].index == more == 90, "appending goes on after pruning"
    assert await store.verify() is None


async def test_entries_appended_by_another_instance_are_found(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    await asyncio.gather(*(s.append(record(i, client=f"client.{i % 2}")) for i, s in
                           ((i, a if i % 2 else b) for i in range(40))))
    for store in (a, b):
        assert len(await everything(store, client="client.1", limit=6)) == 20
        assert len(await everything(store, client="client.0", limit=6)) == 20
        assert len(await everything(store, limit=6)) == 40


async def test_concurrent_appends_are_all_indexed(store_factory: StoreFactory) -> None:
    store = await store_factory()
    indices = await asyncio.gather(*(store.append(record(i, case_ref=f"CONC-{i:04d}")) for i in range(200)))
    for i in (0, 57, 199):
        hits = (await store.search(LogQuery(case_ref=f"CONC-{i:04d}"))).hits
        assert [h.index for h in hits] == [indices[i]]
        assert hits[0].entry["request_id"] == f"req-{i:05d}"
    assert len(await everything(store, limit=MAX_PAGE)) == 200


async def test_a_reopened_log_is_still_searchable_and_keeps_indexing(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await filled(store, 30)
    await store.close()
    reopened = await store_factory()
    await reopened.append(record(30, at=T0 - timedelta(hours=1)))  # older than everything before it
    assert [h.index for h in await everything(reopened, until=T0)] == [30]
    assert [h.index for h in await everything(reopened, since=T0 + timedelta(minutes=29))] == [29]
    assert len(await everything(reopened, limit=MAX_PAGE)) == 31
