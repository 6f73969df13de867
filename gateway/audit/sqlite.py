"""The embedded access log: SQLite, append-only, hash-chained.

Each row stores the canonical entry, its leaf hash and the chain hash
``H(0x02 || previous chain hash || leaf hash)``. Altering, removing or reordering a row breaks the chain
at that index; ``verify`` names the first bad one. Triggers refuse UPDATE and DELETE through SQL. (Cutting
off the tail is detected once signed tree heads exist; see the Merkle log work.)

SQLite is blocking, so every call runs on one dedicated writer thread: the event loop never waits on disk,
and appends are serialised without a lock. Concurrent appends are grouped into one transaction, which
reads the chain head under SQLite's write lock, so several processes may share one file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from gateway.audit.record import GENESIS, AccessRecord, chain_hash, leaf_hash
from gateway.audit.store import ChainBreak

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS access_log (
    idx INTEGER PRIMARY KEY,
    entry BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    chain_hash BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
"""


class SqliteAccessLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[AccessRecord, asyncio.Future[int], asyncio.AbstractEventLoop]] = []
        self._lock = threading.Lock()

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(SCHEMA)
        self._conn = conn

    async def append(self, record: AccessRecord) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._lock:
            self._pending.append((record, future, loop))
            first = len(self._pending) == 1
        if first:  # one flush drains everything queued meanwhile (group commit)
            loop.run_in_executor(self._executor, self._flush)
        return await future

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        assert self._conn is not None, "open() the access log first"
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            # the head is read inside the write lock: another process may have appended meanwhile
            row = self._conn.execute("SELECT idx, chain_hash FROM access_log ORDER BY idx DESC LIMIT 1").fetchone()
            index, previous = (row[0] + 1, bytes(row[1])) if row else (0, GENESIS)
            rows = []
            for record, _, _ in batch:
                entry = record.canonical()
                leaf = leaf_hash(entry)
                previous = chain_hash(previous, leaf)
                rows.append((index, entry, leaf, previous))
                index += 1
            self._conn.executemany("INSERT INTO access_log VALUES (?, ?, ?, ?)", rows)
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            for _, future, loop in batch:
                loop.call_soon_threadsafe(_set_exception, future, exc)
            return
        for (_, future, loop), row in zip(batch, rows, strict=True):
            loop.call_soon_threadsafe(_set_result, future, row[0])

    async def count(self) -> int:
        return int(await self._run(self._count))

    def _count(self) -> int:
        assert self._conn is not None
        return int(self._conn.execute("SELECT COUNT(*) FROM access_log").fetchone()[0])

    async def verify(self) -> ChainBreak | None:
        result: ChainBreak | None = await self._run(verify_database, self.path)
        return result

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)


def _set_result(future: asyncio.Future[int], value: int) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[int], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def verify_database(path: Path) -> ChainBreak | None:
    """Recompute the whole chain from the first row; the first bad index, or None if intact."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        previous = GENESIS
        rows = conn.execute("SELECT idx, entry, leaf_hash, chain_hash FROM access_log ORDER BY idx")
        for expected_index, (idx, entry, leaf, chained) in enumerate(rows):
            if idx != expected_index:
                return ChainBreak(expected_index, f"entry {expected_index} is missing")
            if not all(isinstance(v, bytes) for v in (entry, leaf, chained)):
                return ChainBreak(idx, "entry is not stored as written (column type changed)")
            if leaf_hash(entry) != leaf:
                return ChainBreak(idx, "entry content does not match its leaf hash (altered)")
            previous = chain_hash(previous, leaf)
            if previous != chained:
                return ChainBreak(idx, "chain hash does not follow from the previous entry")
        return None
    finally:
        conn.close()
