"""Paging one citizen's entries on the real SQLite access log: every page against a brute-force answer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from gateway.audit import AccessRecord, SqliteAccessLog
from gateway.audit.query import LogHit
from gateway.citizen.pages import collect

IDCS_P, CIN_P, OTHER_P = "a" * 64, "b" * 64, "c" * 64


def record(i: int, subject: str | None, shown: bool) -> AccessRecord:
    path = "/v1/verifications" if shown else "/v1/citizen/access-log"
    return AccessRecord(time=f"2026-05-04T09:{i // 60 % 60:02d}:{i % 60:02d}.000000+00:00", request_id=f"{i:032x}",
                        method="POST" if shown else "GET", path=path, status=200, outcome="answered", latency_ms=1.0,
                        client="anss.asd", subject=subject, case_ref=f"CASE-{i}")


def shown(hit: LogHit) -> bool:
    return bool(hit.entry["path"] == "/v1/verifications")


async def _fill(path: Path) -> None:
    rng = random.Random(7)
    store = SqliteAccessLog(path)
    await store.open()
    try:
        for i in range(240):
            subject = rng.choice([IDCS_P, IDCS_P, IDCS_P, IDCS_P, CIN_P, OTHER_P, None])
            # the citizen's own reads (not shown) are under their IDCS pseudonym: that stream is mostly skipped,
            # while the CIN stream is all shown — so the merge must not run ahead of the slower stream
            await store.append(record(i, subject, shown=subject != IDCS_P or rng.random() < 0.1))
    finally:
        await store.close()


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("citizen-pages") / "log.sqlite3"
    asyncio.run(_fill(path))
    return path


@pytest.fixture
async def log(log_file: Path) -> AsyncIterator[SqliteAccessLog]:
    store = SqliteAccessLog(log_file)
    await store.open()
    yield store
    await store.close()


async def expected(log: SqliteAccessLog, subjects: set[str]) -> list[int]:
    entries = await log.entries(0, await log.count())
    return [i for i in range(len(entries) - 1, -1, -1)
            if (e := orjson.loads(entries[i] or b"{}")).get("subject") in subjects
            and e["path"] == "/v1/verifications"]


@pytest.mark.parametrize("subjects", [[IDCS_P], [IDCS_P, CIN_P], ["d" * 64]])
@pytest.mark.parametrize(("limit", "max_batches"), [(1, 8), (3, 1), (7, 8), (20, 8), (20, 1), (100, 1)])
async def test_walking_every_page_gives_exactly_the_citizens_shown_entries(
        log: SqliteAccessLog, subjects: list[str], limit: int, max_batches: int) -> None:
    walked: list[int] = []
    cursor = None
    for _ in range(1000):
        page = await collect(log, subjects, shown, limit, cursor, max_batches=max_batches)
        assert len(page.hits) <= limit
        assert all(shown(h) and h.entry["subject"] in subjects for h in page.hits)
        walked += [h.index for h in page.hits]
        if page.next_cursor is None:
            break
        assert cursor is None or page.next_cursor < cursor, "always further down"
        cursor = page.next_cursor
    else:
        raise AssertionError("the pages never end")
    assert walked == await expected(log, set(subjects))
