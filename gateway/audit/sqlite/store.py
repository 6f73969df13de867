"""The embedded access log: an append-only Merkle tree log (RFC 9162 style) in one SQLite file.

Layout and migration: ``gateway.audit.sqlite.schema``. Each entry is stored with its leaf hash and the tree
root after it; complete subtrees of 64 leaves and more go to ``merkle_nodes`` in the same transaction, and
signed tree heads to ``tree_heads``. Proofs read a handful of rows (``Prover`` over the subtree table).

Appends are grouped into one transaction (group commit) which reads the tree's right edge under SQLite's write
lock (``BEGIN IMMEDIATE``), so several processes may share the file and still grow one tree: the edge is kept
in memory and checked against the last stored root, caught up or rebuilt (``Prover.compact_range``) when
another process appended meanwhile.

Where the append transaction runs: the appends queued in one turn of the event loop are committed there, on
a connection of their own (``gateway.stores.on_loop.LoopConnection``: it never waits for the write lock) with
``synchronous=NORMAL``, so the commit writes the WAL without waiting for the disk; then the writer thread
``fsync``s the WAL, and only then are the callers answered. An entry is therefore on the disk before the
answer it records leaves, exactly as with ``synchronous=FULL``, but the event loop never hands the GIL to a
thread building the transaction: measured, that hand-over cost the loop more than the transaction itself.
When the file is busy (another process appends), the guard has paused the loop's steps, or an ``fsync`` ever
failed, the batch goes to the writer thread instead, which waits for the lock and commits with ``FULL`` as
before. Everything else that writes (tree heads, checkpoints, pruning) runs on the writer thread; a tree head
is signed only after the WAL is on the disk, so no head covers an entry a power cut could take back. Short
reads run on a reader thread with its own connection; a full verification or an export on a third thread,
each over one read snapshot; searches on a fourth (``gateway.audit.sqlite.search``: the index is written in
the same transaction as the entries). Readers may see an entry in the moment between its commit and its
``fsync``; no answer, head or proof rests on it before the ``fsync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO, TypeVar

import structlog

from gateway.audit.aggregates import Counts, HourlyRow, Key, hour_of, record_deltas
from gateway.audit.merkle import CompactRange, SignedTreeHead, TreeHead
from gateway.audit.merkle import leaf_hash as merkle_leaf_hash
from gateway.audit.pacing import Pacer, paced_writer
from gateway.audit.query import LogPage, LogQuery
from gateway.audit.recompute import NODE_LEVEL
from gateway.audit.record import AccessRecord
from gateway.audit.rules import check_extends, head_timestamp, merged_note, size_to_sign
from gateway.audit.rules import dated_before as _dated_before
from gateway.audit.search_index import IndexFields, micros, record_fields
from gateway.audit.sqlite.aggregates import busy_subjects, hourly, write_hourly
from gateway.audit.sqlite.schema import ensure_schema
from gateway.audit.sqlite.search import drop_pruned, last_high_water, search, write_index
from gateway.audit.sqlite.tree import (
    HEAD_COLUMNS,
    LogStatus,
    Tree,
    connect,
    database_status,
    export_database,
    first_kept,
    verify_database,
)
from gateway.audit.store import ChainBreak
from gateway.crypto.keys import PublicKey, SigningKey
from gateway.stores.on_loop import LoopConnection, LoopGuard

__all__ = ["LogStatus", "SqliteAccessLog", "connect", "database_status", "export_database", "verify_database"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
Pending = tuple[bytes, IndexFields, list[tuple[Key, Counts]]]  # an entry, its index fields, its aggregates
Waiting = tuple[asyncio.Future[int], asyncio.AbstractEventLoop]
Outcome = tuple[asyncio.Future[int], asyncio.AbstractEventLoop, int | BaseException]
PRUNE_CHUNK = 2048  # entries pruned per transaction, so appends never wait long
CHECKPOINT_EVERY = 256  # loop commits between two WAL checkpoints (the loop's connection never checkpoints)
RETRY_S, RETRIES = 0.001, 20  # while the writer thread is in a transaction, the loop tries again this often


class _Held:
    """The writer thread is in a transaction of this process (a tree head, pruning, a batch of its own)."""


HELD = _Held()
MICROSECOND = timedelta(microseconds=1)


class SqliteAccessLog:
    """``AccessLog`` over one SQLite file; see the module docstring for the threads and the tree."""

    def __init__(self, path: Path, *, trusted_keys: Callable[[], Mapping[str, PublicKey]] | None = None,
                 clock_ms: Callable[[], int] | None = None, on_loop: bool = True,
                 guard: LoopGuard | None = None) -> None:
        self.path = path
        self._on_loop = on_loop  # False: every append on the writer thread (synchronous=FULL)
        self._guard = guard or LoopGuard("access_log")
        self._fast: LoopConnection | None = None  # the loop's connection (open() makes it)
        self._fast_tree: Tree | None = None
        self._commit_lock = threading.Lock()  # one write transaction at a time in this process (loop or thread)
        self._unsynced: list[list[Outcome]] = []  # committed on the loop, their fsync still to come
        self._wal_inode: int | None = None  # the WAL file synced last (a new one: its directory is synced too)
        self._since_checkpoint = 0
        self._retries = 0  # loop flushes in a row that found the writer thread in a transaction
        self.trusted_keys = trusted_keys
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log-read")
        self._auditor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log-audit")
        self._searcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log-search")
        self._write_tree: Tree | None = None
        self._read_tree: Tree | None = None
        self._search_conn: sqlite3.Connection | None = None
        self._edge: CompactRange | None = None  # the right edge after our last commit (writer thread only)
        self._pending: list[tuple[Pending | BaseException, asyncio.Future[int], asyncio.AbstractEventLoop]] = []
        self._lock = threading.Lock()

    async def _write(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    # --- lifecycle ------------------------------------------------------------------------------------------------

    async def open(self) -> None:
        await self._write(self._open_writer)
        await self._read(self._open_reader)
        await asyncio.get_running_loop().run_in_executor(self._searcher, self._open_searcher)
        if self._on_loop:  # (after the writer: the file exists, in WAL mode, at the current schema)
            self._fast = LoopConnection(self.path, self._guard, ("synchronous=NORMAL", "wal_autocheckpoint=0"))

    def _open_writer(self) -> None:
        conn = connect(self.path)
        try:
            ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._write_tree = Tree(conn)

    def _open_reader(self) -> None:
        self._read_tree = Tree(connect(self.path))

    def _open_searcher(self) -> None:
        self._search_conn = connect(self.path)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._fast is not None:  # (a sync already submitted still runs: the writer drains before it stops)
            self._fast.close()
            self._fast = self._fast_tree = None
        if self._search_conn is not None:
            await loop.run_in_executor(self._searcher, self._search_conn.close)
        for tree, executor in ((self._read_tree, self._reader), (self._write_tree, self._writer)):
            if tree is not None:
                await loop.run_in_executor(executor, tree.conn.close)
        self._read_tree = self._write_tree = None
        self._search_conn = None
        for executor in (self._reader, self._writer, self._auditor, self._searcher):
            executor.shutdown(wait=True)

    def _writing(self) -> Tree:
        if self._write_tree is None:
            raise RuntimeError("open() the access log first")
        return self._write_tree

    def _reading(self) -> Tree:
        if self._read_tree is None:
            raise RuntimeError("open() the access log first")
        return self._read_tree

    # --- appending (group commit) ---------------------------------------------------------------------------------

    async def append(self, record: AccessRecord) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        try:  # the search index's fields come from the record the bytes are made of (no parsing back)
            entry: Pending | BaseException = (record.canonical(), record_fields(record), record_deltas(record))
        except Exception as exc:  # this record alone fails; it never joins (and spoils) a batch
            entry = exc
        with self._lock:
            self._pending.append((entry, future, loop))
            first = len(self._pending) == 1
        if first:  # one flush takes everything queued meanwhile: this turn of the loop's appends, in one commit
            if self._fast is not None:
                loop.call_soon(self._flush_on_loop)
            else:  # it wakes the loop once, to settle (a submit, not run_in_executor, which would wake it twice)
                self._writer.submit(self._flush)
        return await future

    def _take(self) -> tuple[list[Pending], list[Waiting], list[Outcome]]:
        """The queued appends: their entries, who waits for each, and the outcomes already known (a record that
        could not even be serialised fails alone)."""
        with self._lock:
            batch, self._pending = self._pending, []
        entries: list[Pending] = []
        waiting: list[Waiting] = []
        outcomes: list[Outcome] = []
        for entry, future, loop in batch:
            if isinstance(entry, BaseException):
                outcomes.append((future, loop, entry))
            else:
                entries.append(entry)
                waiting.append((future, loop))
        return entries, waiting, outcomes

    def _flush_on_loop(self) -> None:
        """On the event loop: commit the queued appends there (``synchronous=NORMAL``) and hand them to the writer
        thread for the ``fsync`` before anyone is answered; to the thread altogether when the loop cannot."""
        entries, waiting, outcomes = self._take()
        if not entries:
            _answer(outcomes)
            return
        fast = self._fast
        if fast is not None:
            try:
                indices = fast.run(lambda conn: self._commit_on_loop(conn, entries))
            except BaseException as exc:  # the log refused them (corrupt, full): nobody waits for a sync
                _answer(outcomes + [(f, loop, exc) for f, loop in waiting])
                return
            if isinstance(indices, _Held) and self._retries < RETRIES:  # soon over: try again, rather than queue
                self._retries += 1  # behind the thread (a cascade: each batch would then find the thread busy)
                with self._lock:
                    self._pending[:0] = [(e, f, loop) for e, (f, loop) in zip(entries, waiting, strict=True)]
                _answer(outcomes)
                asyncio.get_running_loop().call_later(RETRY_S, self._flush_on_loop)
                return
            self._retries = 0
            if isinstance(indices, list):
                committed = outcomes + [(f, loop, i) for (f, loop), i in zip(waiting, indices, strict=True)]
                with self._lock:
                    self._unsynced.append(committed)
                    first = len(self._unsynced) == 1
                if first:
                    self._submit(self._sync, [(f, loop) for f, loop, _ in committed])
                return
        self._submit(self._flush, waiting + [(f, loop) for f, loop, _ in outcomes], (entries, waiting, outcomes))

    def _submit(self, fn: Callable[..., None], waiting: Sequence[Waiting], *args: object) -> None:
        """``fn(*args)`` on the writer thread; if the log was closed meanwhile, ``waiting`` get that error."""
        try:
            self._writer.submit(fn, *args)
        except RuntimeError as exc:  # (the executor is shut down)
            _answer([(f, loop, exc) for f, loop in waiting])

    def _commit_on_loop(self, conn: sqlite3.Connection, entries: Sequence[Pending]) -> list[int] | _Held:
        """The append transaction on the loop's connection; ``HELD`` when the writer thread is in a transaction
        of its own."""
        if not self._commit_lock.acquire(blocking=False):
            return HELD
        try:
            if self._fast_tree is None or self._fast_tree.conn is not conn:
                self._fast_tree = Tree(conn)
            return self._append_rows(self._fast_tree, entries)
        finally:
            self._commit_lock.release()

    def _sync(self) -> None:
        """On the writer thread: the WAL to the disk, then every caller whose entry it holds is answered. After a
        failed ``fsync`` the kernel may have dropped the pages it could not write, and a later ``fsync`` would
        wrongly succeed: those callers get the error, and every later append commits with ``FULL`` on this
        thread."""
        with self._lock:
            batches, self._unsynced = self._unsynced, []
        try:
            self._fsync_wal()
        except Exception as exc:  # (anything at all: every caller must still be answered)
            log.error("access_log_fsync_failed", error=str(exc))
            self._on_loop, self._fast = False, None  # (the loop's connection is left to the collector)
            _answer([(f, loop, exc) for batch in batches for f, loop, _ in batch])
            return
        _answer([outcome for batch in batches for outcome in batch])
        self._since_checkpoint += len(batches)
        if self._since_checkpoint >= CHECKPOINT_EVERY and self._write_tree is not None:
            self._since_checkpoint = 0
            try:  # passive: nobody waits for it; SQLite syncs the WAL before and the database after
                self._writing().conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.warning("access_log_checkpoint_failed", error=str(exc))

    def _fsync_wal(self) -> None:
        """Every frame written to the WAL so far, on the disk (and the WAL's directory entry, for a new WAL)."""
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:  # checkpointed and removed: SQLite synced the database file itself
            return
        try:
            os.fsync(fd)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        if inode != self._wal_inode:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._wal_inode = inode

    def _flush(self, taken: tuple[list[Pending], list[Waiting], list[Outcome]] | None = None) -> None:
        """On the writer thread: the queued appends (or ``taken``) in one ``FULL`` transaction."""
        entries, waiting, outcomes = taken if taken is not None else self._take()
        if entries:
            try:
                indices: list[int] | BaseException = self._commit(entries)
            except BaseException as exc:
                indices = exc
            for i, (future, loop) in enumerate(waiting):
                outcomes.append((future, loop, indices if isinstance(indices, BaseException) else indices[i]))
        _answer(outcomes)

    @contextmanager
    def _write_transaction(self, tree: Tree | None = None, *, locked: bool = False) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (SQLite's write lock, across processes) ... ``COMMIT``, unless the body ended the
        transaction itself; on any error, roll back and forget the cached right edge (it is read again). On the
        writer's connection unless ``tree`` says otherwise; under this process's commit lock (taken here unless
        ``locked``: the caller holds it)."""
        conn = (tree or self._writing()).conn
        with contextlib.nullcontext() if locked else self._commit_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                if conn.in_transaction:
                    conn.execute("COMMIT")
            except BaseException:
                self._edge = None
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _commit(self, entries: Sequence[Pending]) -> list[int]:
        with self._commit_lock:
            return self._append_rows(self._writing(), entries)

    def _append_rows(self, tree: Tree, entries: Sequence[Pending]) -> list[int]:
        """The append transaction over ``tree``'s connection; the caller holds the commit lock."""
        with self._write_transaction(tree, locked=True) as conn:
            edge = tree.right_edge(self._edge)  # read under the write lock: another process may have appended
            rows: list[tuple[int, bytes, bytes, bytes]] = []
            nodes: list[tuple[int, int, bytes]] = []
            for entry, _, _ in entries:
                leaf = merkle_leaf_hash(entry)
                index = edge.size
                nodes.extend((n.level, n.index, n.hash) for n in edge.append(leaf) if n.level >= NODE_LEVEL)
                rows.append((index, entry, leaf, edge.root()))
            conn.executemany("INSERT INTO access_log (idx, entry, leaf_hash, tree_root) VALUES (?, ?, ?, ?)", rows)
            if nodes:
                conn.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
            write_index(conn, zip((r[0] for r in rows), (f for _, f, _ in entries), strict=True), last_high_water(conn))
            write_hourly(conn, (d for _, _, deltas in entries for d in deltas))
        self._edge = edge
        return [r[0] for r in rows]

    # --- tree heads -----------------------------------------------------------------------------------------------

    async def issue_tree_head(self, key: SigningKey, log_id: str) -> SignedTreeHead | None:
        return await self._write(self._issue, key, log_id)

    def _issue(self, key: SigningKey, log_id: str) -> SignedTreeHead | None:
        tree = self._writing()
        with self._write_transaction() as conn:  # one signer at a time, across processes: one head per size, ever
            self._fsync_wal()  # every entry this head can cover is on the disk (the loop commits without waiting)
            latest = tree.latest_head()
            edge = tree.right_edge(self._edge)
            if size_to_sign(latest, edge.size, log_id) is None:  # (an empty log gets its first head, of size 0)
                conn.execute("ROLLBACK")
                return None
            root = edge.root()
            if latest is not None:
                check_extends(latest, edge.size, root, tree.prover().consistency_proof(latest.head.tree_size,
                                                                                       edge.size))
            timestamp = head_timestamp(self._clock_ms(), latest)
            signed = TreeHead(edge.size, root, timestamp, log_id).sign(key)
            conn.execute(f"INSERT INTO tree_heads ({HEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                         (edge.size, root, timestamp, log_id, signed.signature))
        self._edge = edge
        return signed

    async def latest_tree_head(self) -> SignedTreeHead | None:
        return await self._read(lambda: self._reading().latest_head())

    async def save_checkpoint(self, tree_size: int, note: str) -> str:
        return await self._write(self._save_checkpoint, tree_size, note)

    def _save_checkpoint(self, tree_size: int, note: str) -> str:
        tree = self._writing()
        with self._write_transaction() as conn:
            head = tree.head(tree_size)
            if head is None:
                raise ValueError(f"no signed tree head of size {tree_size} to keep a checkpoint for")
            kept = merged_note(head, tree.checkpoint(tree_size), note)
            if kept.changed:
                conn.execute("INSERT INTO checkpoints (tree_size, note) VALUES (?, ?) ON CONFLICT (tree_size) "
                             "DO UPDATE SET note = excluded.note", (tree_size, kept.note))
        return kept.note

    async def checkpoint(self, tree_size: int | None = None) -> str | None:
        return await self._read(lambda: self._reading().checkpoint(tree_size))

    async def tree_head(self, tree_size: int) -> SignedTreeHead | None:
        return await self._read(lambda: self._reading().head(tree_size))

    # --- reads ----------------------------------------------------------------------------------------------------

    async def count(self) -> int:
        return await self._read(lambda: self._reading().count())

    async def entry(self, index: int) -> bytes | None:
        if index < 0:
            raise IndexError(f"no entry {index}")
        return (await self.entries(index, index + 1))[0]

    async def entries(self, start: int, end: int) -> list[bytes | None]:
        return await self._read(lambda: self._reading().entries(start, end))

    async def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        return await self._read(lambda: self._reading().checked_leaf_hashes(start, end))

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        return await self._read(lambda: self._reading().inclusion_proof(index, tree_size))

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return await self._read(lambda: self._reading().consistency_proof(old_size, new_size))

    # --- search ---------------------------------------------------------------------------------------------------

    async def search(self, query: LogQuery) -> LogPage:
        return await asyncio.get_running_loop().run_in_executor(self._searcher, self._search, query)

    def _search(self, query: LogQuery) -> LogPage:
        if self._search_conn is None:
            raise RuntimeError("open() the access log first")
        return search(self._search_conn, query)

    # --- hourly aggregates (gateway.audit.aggregates) -------------------------------------------------------------

    async def hourly(self, since: datetime, until: datetime, *, sources: bool = False) -> list[HourlyRow]:
        first, end = hour_of(since), hour_of(until - MICROSECOND) + 1
        return await self._heavy(lambda conn: hourly(conn, first, end, sources))

    async def busy_subjects(self, since: datetime, until: datetime, min_clients: int, clients: Sequence[str],
                            limit: int) -> list[tuple[int, int, str, str, str]]:
        return await self._heavy(lambda conn: busy_subjects(conn, micros(since), micros(until), min_clients,
                                                            clients, limit))

    async def _heavy(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the searcher's connection and thread (officers' reads: never the writer's or the reader's)."""
        def run() -> T:
            if self._search_conn is None:
                raise RuntimeError("open() the access log first")
            return fn(self._search_conn)
        return await asyncio.get_running_loop().run_in_executor(self._searcher, run)

    # --- verification, export, retention -------------------------------------------------------------------------

    async def verify(self, keys: Mapping[str, PublicKey] | None = None) -> ChainBreak | None:
        if keys is None and self.trusted_keys is not None:
            keys = self.trusted_keys()
        return await asyncio.get_running_loop().run_in_executor(  # paced: the clients keep the event loop
            self._auditor, lambda: verify_database(self.path, keys, pace=Pacer()))

    async def export(self, out: TextIO, *, inclusion_proofs: bool = True,
                     consistency_proofs: bool = True) -> SignedTreeHead:
        return await asyncio.get_running_loop().run_in_executor(
            self._auditor, lambda: export_database(self.path, paced_writer(out.write, Pacer()),
                                                   inclusion_proofs=inclusion_proofs,
                                                   consistency_proofs=consistency_proofs))

    async def prune(self, before: datetime) -> int:
        if before.tzinfo is None:
            before = before.replace(tzinfo=UTC)
        return await self._write(self._prune, before)

    def _prune(self, before: datetime) -> int:
        total = 0
        while True:
            with self._write_transaction() as conn:
                latest = self._writing().latest_head()
                covered = latest.head.tree_size if latest else 0  # only what a signed head vouches for
                first = first_kept(conn, covered)
                rows = conn.execute("SELECT idx, entry FROM access_log WHERE idx >= ? AND idx < ? ORDER BY idx",
                                    (first, min(first + PRUNE_CHUNK, covered))).fetchall()
                cut = first
                pruned: list[tuple[int, bytes]] = []
                for idx, entry in rows:
                    if entry is not None and not _dated_before(entry, before):
                        break
                    cut = idx + 1
                    if entry is not None:
                        pruned.append((idx, entry))
                if cut > first:
                    total += conn.execute("UPDATE access_log SET entry = NULL WHERE idx >= ? AND idx < ? "
                                          "AND entry IS NOT NULL", (first, cut)).rowcount
                    drop_pruned(conn, pruned)  # the index holds the same fields: retention removes it too
            if cut < first + PRUNE_CHUNK or cut >= covered:
                return total


def _answer(outcomes: Sequence[Outcome]) -> None:
    """Each caller its index or its error, from any thread: one wake-up per event loop, not one per entry."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]] = {}
    for future, loop, outcome in outcomes:
        by_loop.setdefault(loop, []).append((future, outcome))
    for loop, settled in by_loop.items():
        loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    for future, outcome in settled:
        if future.done():  # cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
