"""The access log on PostgreSQL: the SQLite store's Merkle tree log (docs/merkle-log.md), shared by several
gateway processes, over psycopg's async driver.

Layout: ``gateway.audit.postgres.schema``. What makes one tree out of many writers:

* **One sequencer at a time.** Each process groups its concurrent appends (group commit: one flush task, one
  transaction per batch). The transaction first takes ``pg_advisory_xact_lock`` on the log, so indices are
  assigned by one writer at a time, across processes; under it the writer reads the tree's right edge — the
  compact range kept from its last commit, checked against the root stored with the last entry, caught up
  from the leaves another process appended meanwhile or rebuilt from the stored subtrees — then inserts the
  entries with their leaf hashes and roots, the subtrees they complete and their search-index rows
  (``gateway.audit.postgres.search``). Indices
  are never taken from a sequence (sequences leave gaps on rollback); the lock goes with the transaction.
* **One signer.** Tree heads are signed on a cadence only by the *elected* process: the one holding the
  session-level advisory lock ``pg_try_advisory_lock`` (``leading``; ``TreeHeadSigner`` asks before each
  round). When it dies its session ends, the lock is free, and the next process to ask takes over. Signing
  itself (``issue_tree_head``) is safe from any process — commands and replicas alike: it runs under the same
  transaction lock as appends, re-reads the latest head, checks with a consistency proof that the stored tree
  extends it, and ``tree_heads.tree_size`` is the primary key: at most one head per size, ever.

**Health.** The store tracks whether its database answers (``gateway.audit.health``): a failed append or
ping marks it down, a probe on a fresh connection (``DatabaseTimeouts``) brings it back, so the gateway refuses
at once while PostgreSQL is away instead of waiting for the driver's timeouts.

Proofs use the shared ``Prover`` through ``gateway.audit.prefetch``; a full verification and an export stream
the log over one snapshot on a worker thread (``gateway.audit.postgres.tree``), through the code every store
shares, so they report exactly what the SQLite store would. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.audit.aggregates import Counts, HourlyRow, hour_of, record_deltas
from gateway.audit.aggregates import Key as HourlyKey
from gateway.audit.health import StoreHealth
from gateway.audit.merkle import EMPTY_ROOT, CompactRange, Prover, SignedTreeHead, TreeHead
from gateway.audit.merkle import leaf_hash as merkle_leaf_hash
from gateway.audit.pacing import Pacer, paced_writer
from gateway.audit.postgres.aggregates import busy_subjects, hourly, write_hourly
from gateway.audit.postgres.schema import ensure_schema
from gateway.audit.postgres.search import HIGH_WATER, drop_pruned, search, write_index
from gateway.audit.postgres.tree import HEAD_COLUMNS, export_postgres, parse_head, verify_postgres
from gateway.audit.prefetch import Key, prove
from gateway.audit.query import LogPage, LogQuery
from gateway.audit.recompute import NODE_LEVEL
from gateway.audit.record import AccessRecord
from gateway.audit.rules import (
    catch_up_range,
    caught_up,
    check_edge,
    check_extends,
    head_timestamp,
    merged_note,
    prune_cut,
    size_to_sign,
)
from gateway.audit.search_index import IndexFields, micros, record_fields
from gateway.audit.store import ChainBreak
from gateway.crypto.keys import PublicKey, SigningKey
from gateway.stores.postgres import DatabaseUnavailable, PostgresTarget

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
MAX_BATCH = 1024  # entries per append transaction: the log's lock is never held long
# A writer never waits for the log's lock for ever, and a session stuck inside a transaction (holding the
# lock) is ended by the server, which frees the lock for the others.
SESSION = {"lock_timeout": "10s", "idle_in_transaction_session_timeout": "60s"}
# The elected session: the server probes it, so the seat of a process that vanished without closing its
# connection is freed within about a minute; our own check of it never waits long.
ELECTION_SESSION = ("SET tcp_keepalives_idle = 20", "SET tcp_keepalives_interval = 10",
                    "SET tcp_keepalives_count = 3")
ELECTION_CHECK_S = 5.0
PRUNE_CHUNK = 2048  # entries pruned per transaction
MICROSECOND = timedelta(microseconds=1)
# What says the database is away (not what says a statement was refused, e.g. by a trigger)
UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, DatabaseUnavailable, OSError,
               TimeoutError)


class PostgresAccessLog:
    """``AccessLog`` on PostgreSQL; see the module docstring. ``open`` before use, ``close`` after."""

    def __init__(self, target: PostgresTarget, *, trusted_keys: Callable[[], Mapping[str, PublicKey]] | None = None,
                 clock_ms: Callable[[], int] | None = None, pool_size: int = 4) -> None:
        self.target = target
        self.trusted_keys = trusted_keys
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._log_lock = target.lock_key("access-log")  # transaction lock: one writer of the tree at a time
        self._sequencer_lock = target.lock_key("access-log-sequencer")  # session lock: the elected signer
        self._write = asyncio.Lock()  # one write transaction at a time in this process
        self._edge: CompactRange | None = None  # the right edge after our last commit
        self._pending: list[tuple[bytes, IndexFields, list[tuple[HourlyKey, Counts]], asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._election: Conn | None = None  # the session that holds (or asks for) the sequencer lock
        self._leading = False
        self._electing = asyncio.Lock()
        self._closed = False
        self._retired: set[asyncio.Task[None]] = set()  # pools replaced after an outage, closing
        t = target.timeouts
        self.health = StoreHealth("access-log", self._ping, self._probe, ping_timeout_s=t.ping_timeout_s,
                                  fresh_s=t.health_fresh_s, probe_interval_s=t.probe_interval_s)

    # --- health (gateway.audit.health) ----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self.health.available

    async def ensure_available(self) -> None:
        await self.health.ensure()

    async def _ping(self) -> None:
        if self._pool is None:
            raise RuntimeError("open() the access log first")
        async with self._pool.connection(timeout=self.target.timeouts.ping_timeout_s) as conn:
            await conn.execute("SELECT 1")

    async def _probe(self) -> None:
        """A fresh connection, not the pool's (whose connections may all be dead), within the connect timeout;
        then a new pool in place of the old one, which may be waiting out its reconnection back-off."""
        async with asyncio.timeout(self.target.timeouts.connect_timeout_s):
            conn = await self.target.connect()
            try:
                await conn.execute("SELECT 1")
            finally:
                await conn.close()
        if self._closed or self._pool is None:
            return
        pool = self.target.pool("access-log", self._pool_size, SESSION)
        await self.target.open_pool(pool)
        old, self._pool = self._pool, pool
        task = asyncio.create_task(old.close(timeout=self.target.timeouts.pool_wait_s), name="access-log-old-pool")
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    # --- lifecycle ------------------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        conn = await self.target.connect()
        try:
            await ensure_schema(self.target, conn)
        finally:
            await conn.close()
        pool = self.target.pool("access-log", self._pool_size, SESSION)
        await self.target.open_pool(pool)
        self._pool, self._closed = pool, False

    async def close(self) -> None:
        self._closed = True  # no new election after this
        await self.health.close()
        await asyncio.gather(*self._retired, return_exceptions=True)
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        async with self._electing:
            if self._election is not None:
                await self._election.close()
            self._election, self._leading = None, False
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _connection(self) -> AbstractAsyncContextManager[Conn]:
        if self._pool is None:
            raise RuntimeError("open() the access log first")
        return self._pool.connection()

    # --- the elected sequencer ------------------------------------------------------------------------------------

    async def leading(self) -> bool:
        """Whether this instance is the elected sequencer, which signs tree heads on the cadence: it holds the
        log's session-level advisory lock, or takes it now if it is free (its holder stopped or died)."""
        async with self._electing:
            if self._closed:
                return False
            try:
                if self._election is not None and self._leading:
                    await asyncio.wait_for(self._election.execute("SELECT 1"), ELECTION_CHECK_S)
                    return True
                if self._election is None or self._election.closed:
                    self._election = await self.target.connect()
                    for setting in ELECTION_SESSION:
                        await self._election.execute(setting)
                row = await (await asyncio.wait_for(self._election.execute(
                    "SELECT pg_try_advisory_lock(%s)", (self._sequencer_lock,)), ELECTION_CHECK_S)).fetchone()
                self._leading = bool(row and row[0])
            except (psycopg.Error, DatabaseUnavailable, TimeoutError):  # our session is gone, and the seat with it
                if self._election is not None:
                    await self._election.close()
                self._election, self._leading = None, False
            return self._leading

    # --- appending (group commit) ---------------------------------------------------------------------------------

    async def append(self, record: AccessRecord) -> int:
        entry = record.canonical()  # a record that cannot be serialised fails alone, before joining a batch
        fields = record_fields(record)  # what the search index holds, from the record the bytes are made of
        deltas = record_deltas(record)  # what it adds to the hourly aggregates
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, fields, deltas, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="access-log-flush")
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    indices = await self._commit([(entry, fields, deltas) for entry, fields, deltas, _ in batch])
                except Exception as exc:
                    if isinstance(exc, UNREACHABLE):
                        self.health.failed(exc)
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.health.confirmed()
                for (*_, future), index in zip(batch, indices, strict=True):
                    if not future.done():  # its caller was cancelled meanwhile: the entry stands
                        future.set_result(index)
        finally:
            self._flusher = None

    async def _commit(self, entries: Sequence[tuple[bytes, IndexFields, list[tuple[HourlyKey, Counts]]]]) -> list[int]:
        leaves = [merkle_leaf_hash(entry) for entry, _, _ in entries]  # outside the lock
        async with self._write, self._connection() as conn:
            try:  # pipelined: one round trip takes the lock and reads the edge, one writes the batch and commits
                async with conn.pipeline(), conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._log_lock,))
                    high_water = await conn.execute(HIGH_WATER)
                    edge = await self._right_edge(conn, self._edge)  # another process may have appended
                    rows: list[tuple[int, bytes, bytes, bytes]] = []
                    nodes: list[tuple[int, int, bytes]] = []
                    for (entry, _, _), leaf in zip(entries, leaves, strict=True):
                        index = edge.size
                        nodes.extend((n.level, n.index, n.hash) for n in edge.append(leaf) if n.level >= NODE_LEVEL)
                        rows.append((index, entry, leaf, edge.root()))
                    await conn.execute("INSERT INTO access_log (idx, entry, leaf_hash, tree_root) SELECT * FROM "
                                       "unnest(%b::bigint[], %b::bytea[], %b::bytea[], %b::bytea[])", _columns(rows, 4))
                    if nodes:
                        await conn.execute("INSERT INTO merkle_nodes (level, idx, hash) SELECT * FROM "
                                           "unnest(%b::integer[], %b::bigint[], %b::bytea[])", _columns(nodes, 3))
                    hw = await high_water.fetchone()
                    await write_index(conn, zip((r[0] for r in rows), (f for _, f, _ in entries), strict=True),
                                      hw[0] if hw else None)
                    await write_hourly(conn, (d for _, _, deltas in entries for d in deltas))
            except BaseException:
                self._edge = None
                raise
            self._edge = edge
        return [row[0] for row in rows]

    async def _right_edge(self, conn: Conn, cached: CompactRange | None) -> CompactRange:
        """The compact range of the whole stored tree (under the log's lock), from ``cached`` when it still
        describes it (``gateway.audit.rules``)."""
        size, root = await _tail(conn)
        missed = catch_up_range(cached, size)
        edge = caught_up(cached, size, root, await _leaf_range(conn, *missed) if missed else None)
        return edge or check_edge(await _prove(conn, lambda p: p.compact_range(size)), root)

    # --- tree heads -----------------------------------------------------------------------------------------------

    async def issue_tree_head(self, key: SigningKey, log_id: str) -> SignedTreeHead | None:
        async with self._write, self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._log_lock,))
            latest = await _latest_head(conn)
            edge = await self._right_edge(conn, self._edge)
            if size_to_sign(latest, edge.size, log_id) is None:  # (an empty log gets its first head, of size 0)
                return None
            root = edge.root()
            if latest is not None:
                old = latest.head.tree_size
                check_extends(latest, edge.size, root,
                              await _prove(conn, lambda p: p.consistency_proof(old, edge.size)))
            timestamp = head_timestamp(self._clock_ms(), latest)
            signed = TreeHead(edge.size, root, timestamp, log_id).sign(key)
            await conn.execute(f"INSERT INTO tree_heads ({HEAD_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
                               (edge.size, root, timestamp, log_id, signed.signature))
            return signed

    async def latest_tree_head(self) -> SignedTreeHead | None:
        async with self._connection() as conn:
            return await _latest_head(conn)

    async def save_checkpoint(self, tree_size: int, note: str) -> str:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._log_lock,))
            row = await (await conn.execute(f"SELECT {HEAD_COLUMNS} FROM tree_heads WHERE tree_size = %s",
                                            (tree_size,))).fetchone()
            if row is None:
                raise ValueError(f"no signed tree head of size {tree_size} to keep a checkpoint for")
            found = await (await conn.execute("SELECT note FROM checkpoints WHERE tree_size = %s",
                                              (tree_size,))).fetchone()
            kept = merged_note(parse_head(row), str(found[0]) if found else None, note)
            if kept.changed:
                await conn.execute("INSERT INTO checkpoints (tree_size, note) VALUES (%s, %s) ON CONFLICT (tree_size) "
                                   "DO UPDATE SET note = excluded.note", (tree_size, kept.note))
            return kept.note

    async def checkpoint(self, tree_size: int | None = None) -> str | None:
        async with self._connection() as conn:
            if tree_size is None:
                cursor = await conn.execute("SELECT note FROM checkpoints ORDER BY tree_size DESC LIMIT 1")
            else:
                cursor = await conn.execute("SELECT note FROM checkpoints WHERE tree_size = %s", (tree_size,))
            row = await cursor.fetchone()
            return str(row[0]) if row else None

    async def tree_head(self, tree_size: int) -> SignedTreeHead | None:
        async with self._connection() as conn:
            row = await (await conn.execute(f"SELECT {HEAD_COLUMNS} FROM tree_heads WHERE tree_size = %s",
                                            (tree_size,))).fetchone()
            return parse_head(row) if row else None

    # --- reads ----------------------------------------------------------------------------------------------------

    async def count(self) -> int:
        async with self._connection() as conn:
            return (await _tail(conn))[0]

    async def entry(self, index: int) -> bytes | None:
        if index < 0:
            raise IndexError(f"no entry {index}")
        return (await self.entries(index, index + 1))[0]

    async def entries(self, start: int, end: int) -> list[bytes | None]:
        return await self._column("entry", start, end)

    async def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        return [bytes(h) for h in await self._column("leaf_hash", start, end) if h is not None]

    async def _column(self, column: str, start: int, end: int) -> list[bytes | None]:
        async with self._connection() as conn:
            size = (await _tail(conn))[0]
            if not 0 <= start <= end <= size:
                raise IndexError(f"no entries {start}..{end - 1} in a log of {size}")
            rows = await (await conn.execute(f"SELECT {column} FROM access_log WHERE idx >= %s AND idx < %s "
                                             "ORDER BY idx", (start, end))).fetchall()
            return [r[0] for r in rows]

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        async with self._connection() as conn:
            if tree_size > (await _tail(conn))[0]:
                raise ValueError(f"the log has fewer than {tree_size} entries")
            return await _prove(conn, lambda p: p.inclusion_proof(index, tree_size))

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        async with self._connection() as conn:
            if new_size > (await _tail(conn))[0]:
                raise ValueError(f"the log has fewer than {new_size} entries")
            return await _prove(conn, lambda p: p.consistency_proof(old_size, new_size))

    # --- search ---------------------------------------------------------------------------------------------------

    async def search(self, query: LogQuery) -> LogPage:
        async with self._connection() as conn:
            return await search(conn, query)

    # --- hourly aggregates (gateway.audit.aggregates): short statements, like every read here ----------------------

    async def hourly(self, since: datetime, until: datetime, *, sources: bool = False) -> list[HourlyRow]:
        async with self._connection() as conn:
            return await hourly(conn, hour_of(since), hour_of(until - MICROSECOND) + 1, sources)

    async def busy_subjects(self, since: datetime, until: datetime, min_clients: int, clients: Sequence[str],
                            limit: int) -> list[tuple[int, int, str, str, str]]:
        async with self._connection() as conn:
            return await busy_subjects(conn, micros(since), micros(until), min_clients, clients, limit)

    # --- verification, export, retention -------------------------------------------------------------------------

    async def verify(self, keys: Mapping[str, PublicKey] | None = None) -> ChainBreak | None:
        if keys is None and self.trusted_keys is not None:
            keys = self.trusted_keys()
        return await asyncio.to_thread(lambda: verify_postgres(self.target, keys, pace=Pacer()))  # paced: see pacing

    async def export(self, out: TextIO, *, inclusion_proofs: bool = True,
                     consistency_proofs: bool = True) -> SignedTreeHead:
        return await asyncio.to_thread(export_postgres, self.target, paced_writer(out.write, Pacer()),
                                       inclusion_proofs=inclusion_proofs,
                                       consistency_proofs=consistency_proofs)

    async def prune(self, before: datetime) -> int:
        if before.tzinfo is None:
            before = before.replace(tzinfo=UTC)
        total = 0
        while True:
            async with self._write, self._connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._log_lock,))
                latest = await _latest_head(conn)
                covered = latest.head.tree_size if latest else 0  # only what a signed head vouches for
                first = await _first_kept(conn, covered)
                rows = await (await conn.execute(
                    "SELECT idx, entry FROM access_log WHERE idx >= %s AND idx < %s ORDER BY idx",
                    (first, min(first + PRUNE_CHUNK, covered)))).fetchall()
                cut = prune_cut(rows, first, before)
                if cut > first:
                    pruned = await conn.execute("UPDATE access_log SET entry = NULL WHERE idx >= %s AND idx < %s "
                                                "AND entry IS NOT NULL", (first, cut))
                    total += pruned.rowcount
                    # the index holds the same fields as the entry: retention removes it too
                    await drop_pruned(conn, [(idx, entry) for idx, entry in rows if idx < cut and entry is not None])
            if cut < first + PRUNE_CHUNK or cut >= covered:
                return total


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    """Rows as columns: one ``INSERT ... SELECT * FROM unnest(...)`` writes a whole batch in one statement."""
    return [[row[i] for row in rows] for i in range(width)]


# --- reads shared by the store's transactions --------------------------------------------------------------------


async def _tail(conn: Conn) -> tuple[int, bytes]:
    """The size of the tree and the root stored with its last entry."""
    row = await (await conn.execute("SELECT idx, tree_root FROM access_log ORDER BY idx DESC LIMIT 1")).fetchone()
    return (int(row[0]) + 1, bytes(row[1])) if row else (0, EMPTY_ROOT)


async def _latest_head(conn: Conn) -> SignedTreeHead | None:
    row = await (await conn.execute(f"SELECT {HEAD_COLUMNS} FROM tree_heads ORDER BY tree_size DESC LIMIT 1")
                 ).fetchone()
    return parse_head(row) if row else None


async def _leaf_range(conn: Conn, start: int, end: int) -> list[bytes]:
    rows = await (await conn.execute("SELECT leaf_hash FROM access_log WHERE idx >= %s AND idx < %s ORDER BY idx",
                                     (start, end))).fetchall()
    return [r[0] for r in rows]


async def _prove(conn: Conn, compute: Callable[[Prover], T]) -> T:
    """``compute`` over the stored tree, reading only the leaves and subtrees it needs (``gateway.audit.prefetch``)."""

    async def nodes(keys: Sequence[Key]) -> dict[Key, bytes]:
        rows = await (await conn.execute(
            "SELECT n.level, n.idx, n.hash FROM merkle_nodes n "
            "JOIN unnest(%s::integer[], %s::bigint[]) AS k(level, idx) ON n.level = k.level AND n.idx = k.idx",
            ([k[0] for k in keys], [k[1] for k in keys]))).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    async def leaves(indices: Sequence[int]) -> dict[int, bytes]:
        rows = await (await conn.execute("SELECT idx, leaf_hash FROM access_log WHERE idx = ANY(%s::bigint[])",
                                         (list(indices),))).fetchall()
        return {r[0]: r[1] for r in rows}

    return await prove(compute, nodes, leaves)


async def _first_kept(conn: Conn, limit: int) -> int:
    """The first index below ``limit`` whose payload is kept (pruned entries form a prefix): a binary search."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi) // 2
        row = await (await conn.execute("SELECT entry IS NULL FROM access_log WHERE idx = %s", (mid,))).fetchone()
        if row is not None and row[0]:
            lo = mid + 1
        else:
            hi = mid
    return lo
