"""Batches of verifications and their results: the ``BatchStore`` protocol, and its SQLite implementation (the
embedded default; ``gateway.batch.postgres`` is the other, shared by every machine).

A batch is its subjects (one per line of the upload, numbered from 1), cut into chunks of ``chunk_size``
lines; a chunk is the unit of work a runner claims (``pending`` → ``doing`` with a heartbeat → ``done``). A result
is keyed by (batch, line) and written with ``INSERT … ON CONFLICT DO NOTHING``, so a chunk that runs twice — a
runner killed mid-chunk, its chunk claimed again — writes nothing twice. A line is *claimed* before its subject
is verified; a line that is claimed but has no result after a crash is in doubt: the runner checks the access
log before asking the administrations again (``gateway.batch.runner``).

The subjects are personal data at rest: they are kept only until the batch is finished or cancelled (then
deleted), and results are deleted ``results_retention_days`` after the batch finished.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from gateway.stores.files import open_sqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
  batch_id TEXT PRIMARY KEY, client TEXT NOT NULL, purpose TEXT NOT NULL, checks TEXT NOT NULL,
  case_ref_prefix TEXT NOT NULL, total INTEGER NOT NULL, chunk_size INTEGER NOT NULL,
  status TEXT NOT NULL, created_at REAL NOT NULL, finished_at REAL
);
CREATE TABLE IF NOT EXISTS batch_subjects (
  batch_id TEXT NOT NULL, line INTEGER NOT NULL, subject TEXT NOT NULL, claimed INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (batch_id, line)
);
CREATE TABLE IF NOT EXISTS batch_chunks (
  batch_id TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL, status TEXT NOT NULL,
  runner TEXT, heartbeat REAL, attempts INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (batch_id, first)
);
CREATE TABLE IF NOT EXISTS batch_results (
  batch_id TEXT NOT NULL, line INTEGER NOT NULL, ok INTEGER NOT NULL, result BLOB NOT NULL, at REAL NOT NULL,
  PRIMARY KEY (batch_id, line)
);
CREATE INDEX IF NOT EXISTS batch_chunks_todo ON batch_chunks (status, heartbeat);
"""
# columns added after the first release: a file made before gets them (ALTER TABLE … ADD COLUMN) when opened
ADDED_COLUMNS = (("as_of", "TEXT"), ("language", "TEXT NOT NULL DEFAULT 'fr'"), ("started_at", "REAL"))

RUNNING, DONE, CANCELLED = "running", "done", "cancelled"


@dataclass(frozen=True)
class Batch:
    batch_id: str
    client: str
    purpose: str
    checks: tuple[str, ...]
    case_ref_prefix: str
    total: int
    chunk_size: int
    status: str
    created_at: float
    finished_at: float | None
    as_of: str | None = None  # verify as on this earlier date (ISO), like POST /v1/verifications' as_of
    language: str = "fr"  # of what checks write in words: fr or en (the submission's Accept-Language)
    started_at: float | None = None  # when a runner first claimed one of its chunks: the rate is measured from it


@dataclass(frozen=True)
class Progress:
    batch: Batch
    done: int
    failed: int
    first_result_at: float | None
    last_result_at: float | None

    @property
    def pending(self) -> int:
        """Subjects still to be verified; 0 once cancelled (they are dropped)."""
        return 0 if self.batch.status == CANCELLED else self.batch.total - self.done - self.failed

    @property
    def dropped(self) -> int:
        """Subjects a cancel dropped unverified (0 unless cancelled): total == done + failed + pending + dropped."""
        return self.batch.total - self.done - self.failed if self.batch.status == CANCELLED else 0


@dataclass(frozen=True)
class Chunk:
    batch_id: str
    first: int
    last: int
    attempts: int


class BatchStore(Protocol):
    """What the API and the engines need from a batch store; SQLite and PostgreSQL pass the same contract tests
    (tests/batch/test_store_contract.py). Every method is a coroutine; results are keyed by (batch, line)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create(self, client: str, purpose: str, checks: Sequence[str], case_ref_prefix: str,
                     subjects: Sequence[dict[str, str]], chunk_size: int, *, as_of: str | None = None,
                     language: str = "fr") -> Batch: ...

    async def get(self, batch_id: str) -> Batch | None: ...

    async def progress(self, batch_id: str) -> Progress | None: ...

    async def cancel(self, batch_id: str) -> bool: ...

    async def claim_chunk(self, runner: str, stalled_after_s: float) -> Chunk | None: ...

    async def heartbeat(self, chunk: Chunk, runner: str) -> None: ...

    async def release_all(self, runner: str) -> None: ...

    async def todo(self, chunk: Chunk) -> list[tuple[int, dict[str, str], bool]]: ...

    async def claim_lines(self, batch_id: str, lines: Iterable[int]) -> list[int]: ...

    async def add_results(self, batch_id: str, results: Sequence[tuple[int, bool, bytes]]) -> int: ...

    async def finish_chunk(self, chunk: Chunk, runner: str) -> None: ...

    async def results(self, batch_id: str, after: int, limit: int) -> list[tuple[int, bytes]]: ...

    async def in_flight_from(self, batch_id: str, stalled_after_s: float) -> int | None:
        """The first line of the batch's chunks still being worked on (a live heartbeat), or None: after a cancel,
        what those chunks answer may still arrive below later lines."""
        ...


class SqliteBatchStore:
    """All methods are coroutines running the blocking SQLite calls in a thread, one connection under a lock."""

    def __init__(self, path: Path, busy_timeout_ms: float = 10_000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        self._conn = await asyncio.to_thread(open_sqlite, self.path, SCHEMA, self._busy_timeout_ms)
        await asyncio.to_thread(_add_columns, self._conn)

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)
            self._conn = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        assert self._conn is not None, "open() first"
        conn = self._conn
        async with self._lock:
            return await asyncio.to_thread(fn, conn, *args)

    # ------------------------------------------------------------------ batches

    async def create(self, client: str, purpose: str, checks: Sequence[str], case_ref_prefix: str,
                     subjects: Sequence[dict[str, str]], chunk_size: int, *, as_of: str | None = None,
                     language: str = "fr") -> Batch:
        batch = Batch(uuid.uuid4().hex, client, purpose, tuple(checks), case_ref_prefix, len(subjects), chunk_size,
                      RUNNING, time.time(), None, as_of, language)

        def insert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO batches (batch_id, client, purpose, checks, case_ref_prefix, total, "
                             "chunk_size, status, created_at, as_of, language) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                             (batch.batch_id, client, purpose, orjson.dumps(list(checks)).decode(), case_ref_prefix,
                              batch.total, chunk_size, RUNNING, batch.created_at, as_of, language))
                conn.executemany("INSERT INTO batch_subjects (batch_id, line, subject) VALUES (?,?,?)",
                                 ((batch.batch_id, i, orjson.dumps(s).decode()) for i, s in enumerate(subjects, 1)))
                conn.executemany("INSERT INTO batch_chunks (batch_id, first, last, status) VALUES (?,?,?,'pending')",
                                 ((batch.batch_id, first, min(first + chunk_size - 1, batch.total))
                                  for first in range(1, batch.total + 1, chunk_size)))
        await self._run(insert)
        return batch

    async def get(self, batch_id: str) -> Batch | None:
        def read(conn: sqlite3.Connection) -> Batch | None:
            row = conn.execute(f"SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            return None if row is None else _batch(row)
        result: Batch | None = await self._run(read)
        return result

    async def progress(self, batch_id: str) -> Progress | None:
        def read(conn: sqlite3.Connection) -> Progress | None:
            row = conn.execute(f"SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if row is None:
                return None
            counts = conn.execute("SELECT COALESCE(SUM(ok), 0), COUNT(*) - COALESCE(SUM(ok), 0), MIN(at), MAX(at) "
                                  "FROM batch_results WHERE batch_id = ?", (batch_id,)).fetchone()
            return Progress(_batch(row), int(counts[0]), int(counts[1]), counts[2], counts[3])
        result: Progress | None = await self._run(read)
        return result

    async def cancel(self, batch_id: str) -> bool:
        """Stop a running batch: its pending chunks are dropped and its subjects deleted. False if not running."""
        def write(conn: sqlite3.Connection) -> bool:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                changed = conn.execute("UPDATE batches SET status = ?, finished_at = ? WHERE batch_id = ? AND "
                                       "status = ?", (CANCELLED, time.time(), batch_id, RUNNING)).rowcount
                if changed:
                    conn.execute("DELETE FROM batch_chunks WHERE batch_id = ? AND status = 'pending'", (batch_id,))
                    conn.execute("DELETE FROM batch_subjects WHERE batch_id = ?", (batch_id,))
                return bool(changed)
        result: bool = await self._run(write)
        return result

    # ------------------------------------------------------------------ work

    async def claim_chunk(self, runner: str, stalled_after_s: float) -> Chunk | None:
        """The next chunk to work on: a pending one, else one whose runner stopped heartbeating."""
        def claim(conn: sqlite3.Connection) -> Chunk | None:
            now = time.time()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(
                    "SELECT c.batch_id, c.first, c.last, c.attempts FROM batch_chunks c "
                    "JOIN batches b USING (batch_id) WHERE b.status = ? "
                    "AND (c.status = 'pending' OR (c.status = 'doing' AND c.heartbeat < ?)) "
                    "ORDER BY b.created_at, c.first LIMIT 1", (RUNNING, now - stalled_after_s)).fetchone()
                if row is None:
                    return None
                conn.execute("UPDATE batch_chunks SET status = 'doing', runner = ?, heartbeat = ?, attempts = "
                             "attempts + 1 WHERE batch_id = ? AND first = ?", (runner, now, row[0], row[1]))
                conn.execute("UPDATE batches SET started_at = ? WHERE batch_id = ? AND started_at IS NULL",
                             (now, row[0]))
                return Chunk(row[0], row[1], row[2], row[3] + 1)
        result: Chunk | None = await self._run(claim)
        return result

    async def heartbeat(self, chunk: Chunk, runner: str) -> None:
        def beat(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE batch_chunks SET heartbeat = ? WHERE batch_id = ? AND first = ? AND runner = ?",
                             (time.time(), chunk.batch_id, chunk.first, runner))
        await self._run(beat)

    async def release_all(self, runner: str) -> None:
        """A runner that stops cleanly hands its chunks back at once."""
        def release(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE batch_chunks SET status = 'pending', runner = NULL WHERE status = 'doing' AND "
                             "runner = ?", (runner,))
        await self._run(release)

    async def todo(self, chunk: Chunk) -> list[tuple[int, dict[str, str], bool]]:
        """The chunk's lines without a result: (line, subject, claimed before — in doubt after a crash)."""
        def read(conn: sqlite3.Connection) -> list[tuple[int, dict[str, str], bool]]:
            rows = conn.execute(
                "SELECT s.line, s.subject, s.claimed FROM batch_subjects s LEFT JOIN batch_results r "
                "ON r.batch_id = s.batch_id AND r.line = s.line WHERE s.batch_id = ? AND s.line BETWEEN ? AND ? "
                "AND r.line IS NULL ORDER BY s.line", (chunk.batch_id, chunk.first, chunk.last)).fetchall()
            return [(int(line), orjson.loads(subject), bool(claimed)) for line, subject, claimed in rows]
        result: list[tuple[int, dict[str, str], bool]] = await self._run(read)
        return result

    async def claim_lines(self, batch_id: str, lines: Iterable[int]) -> list[int]:
        """Claim lines before verifying them; the lines claimed — none once the batch is no longer running (a
        cancel deletes the subjects in the same kind of transaction, so no line is claimed after it)."""
        wanted = list(lines)

        def write(conn: sqlite3.Connection) -> list[int]:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT status FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
                if row is None or row[0] != RUNNING:
                    return []
                claimed = []
                for line in wanted:
                    if conn.execute("UPDATE batch_subjects SET claimed = 1 WHERE batch_id = ? AND line = ?",
                                    (batch_id, line)).rowcount:
                        claimed.append(line)
                return claimed
        result: list[int] = await self._run(write)
        return result

    async def add_results(self, batch_id: str, results: Sequence[tuple[int, bool, bytes]]) -> int:
        """Store results (line, ok, JSON line); a line that already has one keeps it. Returns how many were new."""
        def write(conn: sqlite3.Connection) -> int:
            now = time.time()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                before = conn.total_changes
                conn.executemany("INSERT INTO batch_results VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                                 ((batch_id, line, int(ok), line_bytes, now) for line, ok, line_bytes in results))
                return conn.total_changes - before
        result: int = await self._run(write)
        return result

    async def finish_chunk(self, chunk: Chunk, runner: str) -> None:
        """Mark the chunk done; the batch too once every chunk is, and its subjects are deleted then."""
        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE batch_chunks SET status = 'done' WHERE batch_id = ? AND first = ?",
                             (chunk.batch_id, chunk.first))
                left = conn.execute("SELECT COUNT(*) FROM batch_chunks WHERE batch_id = ? AND status != 'done'",
                                    (chunk.batch_id,)).fetchone()[0]
                if not left:
                    conn.execute("UPDATE batches SET status = ?, finished_at = ? WHERE batch_id = ? AND status = ?",
                                 (DONE, time.time(), chunk.batch_id, RUNNING))
                    conn.execute("DELETE FROM batch_subjects WHERE batch_id = ?", (chunk.batch_id,))
        await self._run(write)

    async def in_flight_from(self, batch_id: str, stalled_after_s: float) -> int | None:
        def read(conn: sqlite3.Connection) -> int | None:
            (first,) = conn.execute("SELECT MIN(first) FROM batch_chunks WHERE batch_id = ? AND status = 'doing' "
                                    "AND heartbeat >= ?", (batch_id, time.time() - stalled_after_s)).fetchone()
            return None if first is None else int(first)
        result: int | None = await self._run(read)
        return result

    async def results(self, batch_id: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        def read(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            return [(int(line), bytes(blob)) for line, blob in conn.execute(
                "SELECT line, result FROM batch_results WHERE batch_id = ? AND line > ? ORDER BY line LIMIT ?",
                (batch_id, after, limit))]
        result: list[tuple[int, bytes]] = await self._run(read)
        return result


BATCH_COLUMNS = ("batch_id, client, purpose, checks, case_ref_prefix, total, chunk_size, status, created_at, "
                 "finished_at, as_of, language, started_at")


def _add_columns(conn: sqlite3.Connection) -> None:
    have = {row[1] for row in conn.execute("PRAGMA table_info(batches)")}
    for name, kind in ADDED_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE batches ADD COLUMN {name} {kind}")


def _batch(row: Sequence[Any]) -> Batch:
    """A ``Batch`` from a row of ``BATCH_COLUMNS`` (checks as a JSON array, times as epoch seconds)."""
    checks = row[3] if isinstance(row[3], list) else orjson.loads(row[3])
    return Batch(row[0], row[1], row[2], tuple(checks), row[4], int(row[5]), int(row[6]), row[7],
                 float(row[8]), None if row[9] is None else float(row[9]), row[10], row[11] or "fr",
                 None if row[12] is None else float(row[12]))
