"""The embedded access log's appends committed on the event loop (``synchronous=NORMAL``): an answer waits for
its entry's WAL on the disk, a tree head covers only entries on the disk, a busy file or a failed ``fsync``
sends the appends to the writer thread (``FULL``), and the loop never waits for the write lock."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.audit.sqlite import store as store_module
from gateway.audit.sqlite.store import SqliteAccessLog
from gateway.crypto import keys
from tests.audit.tamper_support import record


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SqliteAccessLog]:
    store = SqliteAccessLog(tmp_path / "log.sqlite3")
    await store.open()
    yield store
    await store.close()


class Fsyncs:
    """``os.fsync`` as the store calls it, recorded by file name; ``hold`` keeps it waiting, ``fail`` raises."""

    def __init__(self) -> None:
        self.real = os.fsync
        self.files: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.fail: OSError | None = None

    def __call__(self, fd: int) -> None:
        self.files.append(os.readlink(f"/proc/self/fd/{fd}"))
        self.hold.wait(10)
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        self.real(fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fsyncs]:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the files synced")
    spy = Fsyncs()
    monkeypatch.setattr(store_module.os, "fsync", spy)
    yield spy
    spy.hold.set()


def rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM access_log").fetchone()[0])
    finally:
        conn.close()


async def test_an_answer_waits_for_its_entry_on_the_disk(log: SqliteAccessLog, fsyncs: Fsyncs) -> None:
    fsyncs.hold.clear()
    appending = asyncio.ensure_future(log.append(record(0)))
    for _ in range(100):  # committed on the loop at once, then the writer thread syncs the WAL
        await asyncio.sleep(0.01)
        if fsyncs.files:
            break
    assert rows(log.path) == 1 and not appending.done()  # in the file, but nobody answered before the fsync
    assert fsyncs.files[0].endswith("log.sqlite3-wal")
    fsyncs.hold.set()
    assert await asyncio.wait_for(appending, 5) == 0
    assert await log.append(record(1)) == 1 and rows(log.path) == 2


async def test_a_tree_head_is_signed_only_over_entries_on_the_disk(log: SqliteAccessLog, fsyncs: Fsyncs) -> None:
    await asyncio.gather(*(log.append(record(i)) for i in range(5)))
    before = len(fsyncs.files)
    head = await log.issue_tree_head(keys.generate(), "test.access")
    assert head is not None and head.head.tree_size == 5
    assert any(f.endswith("-wal") for f in fsyncs.files[before:])  # the head's own sync, under the write lock


async def test_a_busy_file_sends_the_appends_to_the_writer_thread_and_the_loop_never_waits(
        log: SqliteAccessLog) -> None:
    other = sqlite3.connect(log.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process appending, say
    try:
        appending = asyncio.ensure_future(log.append(record(0)))
        started = time.perf_counter()
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert time.perf_counter() - started < 1.0  # the loop turned freely while the append waited
        assert not appending.done()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await asyncio.wait_for(appending, 10) == 0  # the thread got the lock once it was free
    assert rows(log.path) == 1


async def test_after_a_failed_fsync_the_callers_get_the_error_and_every_append_goes_to_the_thread(
        log: SqliteAccessLog, fsyncs: Fsyncs) -> None:
    fsyncs.fail = OSError(5, "Input/output error")
    with pytest.raises(OSError):
        await log.append(record(0))  # answered with the error (the gateway then answers 503)
    assert log._fast is None  # a later fsync could wrongly succeed: no more commits without waiting for the disk
    synced = len(fsyncs.files)
    assert await log.append(record(1)) == 1
    assert len(fsyncs.files) == synced  # FULL on the writer thread: SQLite syncs, not the store
    assert rows(log.path) == 2


@pytest.mark.parametrize("on_loop", [True, False])
async def test_concurrent_appends_get_consecutive_indices_either_way(tmp_path: Path, on_loop: bool) -> None:
    store = SqliteAccessLog(tmp_path / "log.sqlite3", on_loop=on_loop)
    await store.open()
    try:
        indices = await asyncio.gather(*(store.append(record(i)) for i in range(200)))
        assert sorted(indices) == list(range(200))
        assert await store.verify() is None
    finally:
        await store.close()
    assert rows(tmp_path / "log.sqlite3") == 200


async def test_appends_wait_on_the_loop_while_the_writer_thread_is_in_a_transaction(
        log: SqliteAccessLog, fsyncs: Fsyncs) -> None:
    log._commit_lock.acquire()  # the writer thread signing a head, say (a short transaction of this process)
    try:
        appending = asyncio.ensure_future(asyncio.gather(*(log.append(record(i)) for i in range(3))))
        await asyncio.sleep(0.005)
        assert not appending.done()
    finally:
        log._commit_lock.release()
    assert sorted(await asyncio.wait_for(appending, 5)) == [0, 1, 2]
    assert any(f.endswith("-wal") for f in fsyncs.files)  # committed on the loop after all, not queued on the thread
