"""Batches on PostgreSQL: the ``BatchStore`` of ``gateway.batch.store`` shared by every gateway and worker process.

The same four tables as the SQLite store (batches, subjects, chunks, results), in the schema of ``[storage]``
beside the access log. Results are keyed by (batch, line) and written with ``INSERT … ON CONFLICT DO NOTHING``,
so a chunk run twice — by procrastinate after a worker died, or by two engines — writes nothing twice.

Two things only PostgreSQL gives, for several machines:

* **An outbox.** ``outbox`` (set by the procrastinate engine) is called inside the transaction that creates the
  batch, with that transaction's connection: the chunk jobs are deferred in it, so a batch exists exactly when
  its jobs do — a crash between the two cannot leave a batch nobody works on.
* **A lease per chunk.** ``chunk_lease`` holds a session-level advisory lock on its own connection while a chunk
  is worked on. A job retried while the worker that had it still runs (its heartbeat late, not dead) finds the
  lease taken and waits for a later retry, so two processes never verify the same lines at once; a killed
  worker's session ends with it, and its lease with the session.

Times (heartbeats, claims, results) are the database's clock, so machines with skewed clocks agree on what is
stale.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson

from gateway.batch.store import BATCH_COLUMNS, CANCELLED, DONE, RUNNING, Batch, Chunk, Progress, _batch
from gateway.stores.postgres import PostgresTarget, in_ddl_lock

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

Outbox = Callable[["psycopg.AsyncConnection[Any]", Batch, Sequence[Chunk]], Awaitable[None]]

DDL = """
CREATE TABLE IF NOT EXISTS batches (
  batch_id TEXT PRIMARY KEY, client TEXT NOT NULL, purpose TEXT NOT NULL, checks JSONB NOT NULL,
  case_ref_prefix TEXT NOT NULL, total INTEGER NOT NULL, chunk_size INTEGER NOT NULL,
  status TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION,
  as_of TEXT, language TEXT NOT NULL DEFAULT 'fr', started_at DOUBLE PRECISION
);
ALTER TABLE batches ADD COLUMN IF NOT EXISTS started_at DOUBLE PRECISION;
CREATE TABLE IF NOT EXISTS batch_subjects (
  batch_id TEXT NOT NULL, line INTEGER NOT NULL, subject JSONB NOT NULL, claimed BOOLEAN NOT NULL DEFAULT false,
  PRIMARY KEY (batch_id, line)
);
CREATE TABLE IF NOT EXISTS batch_chunks (
  batch_id TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL, status TEXT NOT NULL,
  runner TEXT, heartbeat DOUBLE PRECISION, attempts INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (batch_id, first)
);
CREATE TABLE IF NOT EXISTS batch_results (
  batch_id TEXT NOT NULL, line INTEGER NOT NULL, ok BOOLEAN NOT NULL, result BYTEA NOT NULL,
  at DOUBLE PRECISION NOT NULL, PRIMARY KEY (batch_id, line)
);
CREATE INDEX IF NOT EXISTS batch_chunks_todo ON batch_chunks (status, heartbeat);
"""
NOW = "EXTRACT(EPOCH FROM clock_timestamp())"


class PostgresBatchStore:
    """Batches in the ``[storage]`` PostgreSQL schema; see the module docstring."""

    def __init__(self, target: PostgresTarget, *, pool_size: int = 4, outbox: Outbox | None = None) -> None:
        self.target = target
        self.outbox = outbox
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None

    async def open(self) -> None:
        conn = await self.target.connect()
        try:
            async def create(c: psycopg.AsyncConnection[Any]) -> None:
                await c.execute(DDL)

            await in_ddl_lock(self.target, conn, create)
        finally:
            await conn.close()
        self._pool = self.target.pool("anss-batches", self._pool_size)
        await self.target.open_pool(self._pool)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _connection(self) -> Any:
        assert self._pool is not None, "open() first"
        return self._pool.connection()

    # ------------------------------------------------------------------ batches

    async def create(self, client: str, purpose: str, checks: Sequence[str], case_ref_prefix: str,
                     subjects: Sequence[dict[str, str]], chunk_size: int, *, as_of: str | None = None,
                     language: str = "fr") -> Batch:
        batch = Batch(uuid.uuid4().hex, client, purpose, tuple(checks), case_ref_prefix, len(subjects), chunk_size,
                      RUNNING, time.time(), None, as_of, language)
        chunks = [Chunk(batch.batch_id, first, min(first + chunk_size - 1, batch.total), 0)
                  for first in range(1, batch.total + 1, chunk_size)]
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO batches (batch_id, client, purpose, checks, case_ref_prefix, total, chunk_size, status, "
                "created_at, as_of, language) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s)",
                (batch.batch_id, client, purpose, orjson.dumps(list(checks)).decode(), case_ref_prefix, batch.total,
                 chunk_size, RUNNING, batch.created_at, as_of, language))
            async with conn.cursor().copy("COPY batch_subjects (batch_id, line, subject) FROM STDIN") as copy:
                for line, subject in enumerate(subjects, 1):
                    await copy.write_row((batch.batch_id, line, orjson.dumps(subject).decode()))
            await conn.execute(
                "INSERT INTO batch_chunks (batch_id, first, last, status) "
                "SELECT %s, f, l, 'pending' FROM unnest(%s::int[], %s::int[]) AS u(f, l)",
                (batch.batch_id, [c.first for c in chunks], [c.last for c in chunks]))
            if self.outbox is not None:  # the jobs are deferred in this same transaction
                await self.outbox(conn, batch, chunks)
        return batch

    async def get(self, batch_id: str) -> Batch | None:
        async with self._connection() as conn:
            row = await (await conn.execute(f"SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = %s",
                                            (batch_id,))).fetchone()
        return None if row is None else _batch(row)

    async def progress(self, batch_id: str) -> Progress | None:
        async with self._connection() as conn:
            row = await (await conn.execute(f"SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = %s",
                                            (batch_id,))).fetchone()
            if row is None:
                return None
            counts = await (await conn.execute(
                "SELECT COUNT(*) FILTER (WHERE ok), COUNT(*) FILTER (WHERE NOT ok), MIN(at), MAX(at) "
                "FROM batch_results WHERE batch_id = %s", (batch_id,))).fetchone()
        assert counts is not None
        return Progress(_batch(row), int(counts[0]), int(counts[1]), counts[2], counts[3])

    async def cancel(self, batch_id: str) -> bool:
        """Stop a running batch: its pending chunks are dropped and its subjects deleted. False if not running."""
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(f"UPDATE batches SET status = %s, finished_at = {NOW} "
                                        "WHERE batch_id = %s AND status = %s", (CANCELLED, batch_id, RUNNING))
            if not cursor.rowcount:
                return False
            await conn.execute("DELETE FROM batch_chunks WHERE batch_id = %s AND status = 'pending'", (batch_id,))
            await conn.execute("DELETE FROM batch_subjects WHERE batch_id = %s", (batch_id,))
        return True

    # ------------------------------------------------------------------ work

    async def claim_chunk(self, runner: str, stalled_after_s: float) -> Chunk | None:
        """The next chunk to work on: a pending one, else one whose runner stopped heartbeating (another process
        claiming at the same moment skips the row this one locked)."""
        async with self._connection() as conn, conn.transaction():
            row = await (await conn.execute(
                "SELECT c.batch_id, c.first, c.last, c.attempts FROM batch_chunks c JOIN batches b USING (batch_id) "
                f"WHERE b.status = %s AND (c.status = 'pending' OR (c.status = 'doing' AND c.heartbeat < {NOW} - %s)) "
                "ORDER BY b.created_at, c.first LIMIT 1 FOR UPDATE OF c SKIP LOCKED",
                (RUNNING, stalled_after_s))).fetchone()
            if row is None:
                return None
            await conn.execute(f"UPDATE batch_chunks SET status = 'doing', runner = %s, heartbeat = {NOW}, "
                               "attempts = attempts + 1 WHERE batch_id = %s AND first = %s", (runner, row[0], row[1]))
            await conn.execute(f"UPDATE batches SET started_at = {NOW} WHERE batch_id = %s AND started_at IS NULL",
                               (row[0],))
        return Chunk(row[0], int(row[1]), int(row[2]), int(row[3]) + 1)

    async def heartbeat(self, chunk: Chunk, runner: str) -> None:
        async with self._connection() as conn:
            await conn.execute(f"UPDATE batch_chunks SET heartbeat = {NOW} WHERE batch_id = %s AND first = %s "
                               "AND runner = %s", (chunk.batch_id, chunk.first, runner))

    async def release_all(self, runner: str) -> None:
        """A runner that stops cleanly hands its chunks back at once."""
        async with self._connection() as conn:
            await conn.execute("UPDATE batch_chunks SET status = 'pending', runner = NULL WHERE status = 'doing' "
                               "AND runner = %s", (runner,))

    async def todo(self, chunk: Chunk) -> list[tuple[int, dict[str, str], bool]]:
        """The chunk's lines without a result: (line, subject, claimed before — in doubt after a crash)."""
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT s.line, s.subject, s.claimed FROM batch_subjects s LEFT JOIN batch_results r "
                "ON r.batch_id = s.batch_id AND r.line = s.line WHERE s.batch_id = %s AND s.line BETWEEN %s AND %s "
                "AND r.line IS NULL ORDER BY s.line", (chunk.batch_id, chunk.first, chunk.last))).fetchall()
        return [(int(line), dict(subject), bool(claimed)) for line, subject, claimed in rows]

    async def claim_lines(self, batch_id: str, lines: Iterable[int]) -> list[int]:
        """Claim lines before verifying them; the lines claimed — none once the batch is no longer running. The
        batch's row is read ``FOR SHARE``, so a cancel (which updates that row, then deletes the subjects) and a
        claim are one before the other: no line is claimed after a cancel, on any worker."""
        async with self._connection() as conn, conn.transaction():
            row = await (await conn.execute("SELECT status FROM batches WHERE batch_id = %s FOR SHARE",
                                            (batch_id,))).fetchone()
            if row is None or row[0] != RUNNING:
                return []
            rows = await (await conn.execute(
                "UPDATE batch_subjects SET claimed = true WHERE batch_id = %s AND line = ANY(%s) RETURNING line",
                (batch_id, list(lines)))).fetchall()
        return sorted(int(r[0]) for r in rows)

    async def add_results(self, batch_id: str, results: Sequence[tuple[int, bool, bytes]]) -> int:
        """Store results (line, ok, JSON line); a line that already has one keeps it. Returns how many were new."""
        if not results:
            return 0
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"INSERT INTO batch_results (batch_id, line, ok, result, at) SELECT %s, l, o, r, {NOW} "
                "FROM unnest(%s::int[], %s::bool[], %s::bytea[]) AS u(l, o, r) ON CONFLICT DO NOTHING",
                (batch_id, [r[0] for r in results], [r[1] for r in results], [r[2] for r in results]))
            return int(cursor.rowcount)

    async def finish_chunk(self, chunk: Chunk, runner: str) -> None:
        """Mark the chunk done; the batch too once every chunk is, and its subjects are deleted then. The batch's
        row is locked first, so two processes finishing its last two chunks at once cannot both miss the end."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM batches WHERE batch_id = %s FOR UPDATE", (chunk.batch_id,))
            await conn.execute("UPDATE batch_chunks SET status = 'done' WHERE batch_id = %s AND first = %s",
                               (chunk.batch_id, chunk.first))
            left = await (await conn.execute("SELECT COUNT(*) FROM batch_chunks WHERE batch_id = %s AND "
                                             "status != 'done'", (chunk.batch_id,))).fetchone()
            if left is not None and not left[0]:
                await conn.execute(f"UPDATE batches SET status = %s, finished_at = {NOW} WHERE batch_id = %s "
                                   "AND status = %s", (DONE, chunk.batch_id, RUNNING))
                await conn.execute("DELETE FROM batch_subjects WHERE batch_id = %s", (chunk.batch_id,))

    async def in_flight_from(self, batch_id: str, stalled_after_s: float) -> int | None:
        async with self._connection() as conn:
            row = await (await conn.execute(
                f"SELECT MIN(first) FROM batch_chunks WHERE batch_id = %s AND status = 'doing' "
                f"AND heartbeat >= {NOW} - %s", (batch_id, stalled_after_s))).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def results(self, batch_id: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT line, result FROM batch_results WHERE batch_id = %s AND line > %s ORDER BY line LIMIT %s",
                (batch_id, after, limit))).fetchall()
        return [(int(line), bytes(blob)) for line, blob in rows]

    # ------------------------------------------------------------------ several processes

    async def mark_doing(self, chunk: Chunk, runner: str) -> None:
        """Which worker works on ``chunk`` now (for operators: the runner stays once it is done)."""
        async with self._connection() as conn:
            await conn.execute(f"UPDATE batch_chunks SET status = CASE WHEN status = 'done' THEN 'done' ELSE 'doing' "
                               f"END, runner = %s, heartbeat = {NOW}, attempts = attempts + 1 WHERE batch_id = %s AND "
                               "first = %s", (runner, chunk.batch_id, chunk.first))
            await conn.execute(f"UPDATE batches SET started_at = {NOW} WHERE batch_id = %s AND started_at IS NULL",
                               (chunk.batch_id,))

    @asynccontextmanager
    async def chunk_lease(self, chunk: Chunk) -> AsyncIterator[bool]:
        """Whether this process may work on ``chunk`` now: a session advisory lock on a connection of its own,
        held until the block ends (or the process dies). ``False``: another live process has it."""
        conn = await self.target.connect()
        try:
            key = self.target.lock_key(f"batch-chunk:{chunk.batch_id}:{chunk.first}")
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()
            yield bool(row and row[0])
        finally:
            await conn.close()  # the lock ends with the session
