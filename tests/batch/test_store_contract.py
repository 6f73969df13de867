"""The batch stores' contract: SQLite (a file) and PostgreSQL (a fresh schema on the real server; skipped with a
plain reason without it, failed in CI) behave the same — chunks claimed once, results written once, the batch
done when its last chunk is, its identifiers deleted then, cancel, as_of and language kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.batch.postgres import PostgresBatchStore
from gateway.batch.store import BatchStore, Chunk, SqliteBatchStore
from tests.audit.pg_support import fresh_schema_async


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BatchStore]:
    if request.param == "sqlite":
        opened: BatchStore = SqliteBatchStore(tmp_path / "batches.sqlite3")
        await opened.open()
        yield opened
        await opened.close()
        return
    async with fresh_schema_async() as target:
        opened = PostgresBatchStore(target)
        await opened.open()
        try:
            yield opened
        finally:
            await opened.close()


SUBJECTS = [{"idcs": f"{1000000000 + i}"} for i in range(1, 6)]


async def test_a_batch_is_worked_chunk_by_chunk_and_written_once(store: BatchStore) -> None:
    batch = await store.create("anss.asd", "asd.eligibility", ("identity",), "RV-", SUBJECTS, 2,
                               as_of="2025-09-01", language="en")
    again = await store.get(batch.batch_id)
    assert again == batch and (again.as_of, again.language, again.total) == ("2025-09-01", "en", 5)
    first = await store.claim_chunk("a", 30.0)
    second = await store.claim_chunk("b", 30.0)
    assert first is not None and second is not None and (first.first, first.last, second.first) == (1, 2, 3)
    assert await store.claim_chunk("c", 30.0) is not None  # the third (line 5)
    assert await store.claim_chunk("d", 30.0) is None, "nothing left: the three are being worked on"
    assert await store.claim_chunk("d", -1.0) is not None, "a chunk whose runner went silent is taken back"

    todo = await store.todo(first)
    assert [(line, subject, claimed) for line, subject, claimed in todo] == [(1, SUBJECTS[0], False),
                                                                             (2, SUBJECTS[1], False)]
    await store.claim_lines(batch.batch_id, [1])
    assert [claimed for _, _, claimed in await store.todo(first)] == [True, False]
    assert await store.add_results(batch.batch_id, [(1, True, b'{"line":1}')]) == 1
    assert await store.add_results(batch.batch_id, [(1, False, b'{"line":1,"again":1}'), (2, False, b"{}")]) == 1
    assert [line for line, _, _ in await store.todo(first)] == []
    assert await store.results(batch.batch_id, 0, 10) == [(1, b'{"line":1}'), (2, b"{}")], "the first answer kept"
    progress = await store.progress(batch.batch_id)
    assert progress is not None and (progress.done, progress.failed, progress.pending) == (1, 1, 3)

    await store.finish_chunk(first, "a")
    await store.add_results(batch.batch_id, [(3, True, b"{}"), (4, True, b"{}"), (5, True, b"{}")])
    await store.finish_chunk(second, "b")
    assert (await store.get(batch.batch_id)).status == "running"  # type: ignore[union-attr]
    await store.finish_chunk(Chunk(batch.batch_id, 5, 5, 1), "c")
    done = await store.get(batch.batch_id)
    assert done is not None and done.status == "done" and done.finished_at is not None
    assert await store.todo(first) == [], "the identifiers are deleted once the batch is done"
    assert not await store.cancel(batch.batch_id), "a finished batch cannot be cancelled"


async def test_a_cancelled_batch_gives_no_more_work(store: BatchStore) -> None:
    batch = await store.create("anss.asd", "asd.eligibility", ("identity",), "RV-", SUBJECTS, 2)
    assert batch.as_of is None and batch.language == "fr"
    assert await store.cancel(batch.batch_id)
    assert await store.claim_chunk("a", 30.0) is None
    progress = await store.progress(batch.batch_id)
    assert progress is not None and progress.batch.status == "cancelled" and progress.pending == 0
    assert await store.get("0" * 32) is None and await store.progress("0" * 32) is None


async def test_no_line_is_claimed_once_the_batch_is_cancelled(store: BatchStore) -> None:
    """What makes a cancel take effect at once on every runner: the claim of a line fails for a cancelled batch."""
    batch = await store.create("anss.asd", "asd.eligibility", ("identity",), "RV-", SUBJECTS, 5)
    chunk = await store.claim_chunk("a", 30.0)
    assert chunk is not None
    started = await store.get(batch.batch_id)
    assert started is not None and started.started_at is not None, "the first claim starts the batch's clock"
    assert await store.claim_lines(batch.batch_id, [1, 2]) == [1, 2]
    assert await store.cancel(batch.batch_id)
    assert await store.claim_lines(batch.batch_id, [3, 4]) == [], "a cancelled batch starts no further subject"
    progress = await store.progress(batch.batch_id)
    assert progress is not None and (progress.pending, progress.dropped) == (0, 5)
