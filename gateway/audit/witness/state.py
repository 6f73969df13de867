"""The witness's memory: per log origin, the latest checkpoint it cosigned, in one SQLite file of its own.

The check of a submission against what the witness holds and the save of the new checkpoint are one
transaction (``advance``): it takes SQLite's write lock first (``BEGIN IMMEDIATE``), reads the held checkpoint,
lets the caller judge the submission against it, and saves with a compare-and-swap
(``UPDATE ... WHERE origin = ? AND size = <the size judged>``), so two submissions from the same old size —
from one process or several sharing the file — can never both win, and the held size never goes back.
Signed submissions the witness refused as inconsistent are kept in ``refused`` as evidence against the log.

SQLite is blocking: every call runs on one thread of its own, never on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from gateway.stores.files import open_sqlite

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root_hash BLOB NOT NULL CHECK (length(root_hash) = 32),
    note TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    received_at REAL NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    body TEXT NOT NULL
);
"""
KEEP_REFUSED = 1000  # per origin: the evidence kept of refused signed submissions


@dataclass(frozen=True, slots=True)
class HeldCheckpoint:
    """The latest checkpoint the witness cosigned for an origin."""

    origin: str
    size: int
    root_hash: bytes
    note: str


class StaleSize(Exception):
    """The held size changed between the judgement and the save (cannot happen under the write lock; kept as
    the compare-and-swap's guard). ``size`` is the size held now."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the witness now holds size {size}")
        self.size = size


class WitnessState:
    """The SQLite state file; ``open`` before use, ``close`` after."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="witness-state")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if self._conn is None:
            self._conn = open_sqlite(self.path, SCHEMA, self._busy_timeout_ms)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("open() the witness state first")
        return self._conn

    async def held(self, origin: str) -> HeldCheckpoint | None:
        return await self._run(self._held, origin)

    def _held(self, origin: str) -> HeldCheckpoint | None:
        row = self._connection().execute(
            "SELECT size, root_hash, note FROM checkpoints WHERE origin = ?", (origin,)).fetchone()
        return HeldCheckpoint(origin, row[0], bytes(row[1]), row[2]) if row else None

    async def advance(self, origin: str, size: int, root_hash: bytes, note: str,
                      judge: Callable[[HeldCheckpoint | None], None]) -> None:
        """Atomically: ``judge`` the held checkpoint (it raises to refuse), then hold ``(size, root_hash, note)``.

        An exception from ``judge`` rolls back and propagates; nothing is saved."""
        await self._run(self._advance, origin, size, root_hash, note, judge)

    def _advance(self, origin: str, size: int, root_hash: bytes, note: str,
                 judge: Callable[[HeldCheckpoint | None], None]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            held = self._held(origin)
            judge(held)
            now = self._clock()
            if held is None:
                changed = conn.execute(
                    "INSERT INTO checkpoints (origin, size, root_hash, note, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (origin) DO NOTHING", (origin, size, root_hash, note, now)).rowcount
            else:
                changed = conn.execute(
                    "UPDATE checkpoints SET size = ?, root_hash = ?, note = ?, updated_at = ? "
                    "WHERE origin = ? AND size = ? AND size <= ?",
                    (size, root_hash, note, now, origin, held.size, size)).rowcount
            if changed != 1:
                current = self._held(origin)
                raise StaleSize(current.size if current else 0)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def record_refused(self, origin: str, status: int, reason: str, body: str) -> None:
        """Keep a refused, validly signed submission (the latest ``KEEP_REFUSED`` per origin)."""
        await self._run(self._record_refused, origin, status, reason, body)

    def _record_refused(self, origin: str, status: int, reason: str, body: str) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO refused (origin, received_at, status, reason, body) VALUES (?, ?, ?, ?, ?)",
                         (origin, self._clock(), status, reason, body))
            conn.execute("DELETE FROM refused WHERE origin = ? AND id NOT IN "
                         "(SELECT id FROM refused WHERE origin = ? ORDER BY id DESC LIMIT ?)",
                         (origin, origin, KEEP_REFUSED))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def refused(self, origin: str) -> list[tuple[int, str]]:
        """The refused signed submissions kept for ``origin``, oldest first: (status, reason)."""
        return await self._run(self._refused, origin)

    def _refused(self, origin: str) -> list[tuple[int, str]]:
        rows = self._connection().execute(
            "SELECT status, reason FROM refused WHERE origin = ? ORDER BY id", (origin,)).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
