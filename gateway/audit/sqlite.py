"""The embedded access log: an append-only Merkle tree log (RFC 9162 style) in one SQLite file.

Layout and migration: ``gateway.audit.sqlite_schema``. Each entry is stored with its leaf hash and the tree
root after it; complete subtrees of 64 leaves and more go to ``merkle_nodes`` in the same transaction, and
signed tree heads to ``tree_heads``. Proofs read a handful of rows (``Prover`` over the subtree table).

SQLite is blocking, so nothing here runs on the event loop. Writes (appends, tree heads, pruning) run on one
writer thread; concurrent appends are grouped into one transaction (group commit) which reads the tree's
right edge under SQLite's write lock (``BEGIN IMMEDIATE``), so several processes may share the file and still
grow one tree: the edge is kept in memory and checked against the last stored root, caught up or rebuilt
(``Prover.compact_range``) when another process appended meanwhile. Short reads run on a reader thread with
its own connection; a full verification or an export on a third thread, each over one read snapshot.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, TypeVar

import orjson

from gateway.audit.export import ExportRow, NodeCache, WindowedLeaves, export_rows
from gateway.audit.merkle import EMPTY_ROOT, CompactRange, Prover, SignedTreeHead, TreeHead, verify_consistency
from gateway.audit.merkle import leaf_hash as merkle_leaf_hash
from gateway.audit.recompute import NODE_LEVEL, HeadRow, head_from_row, recompute
from gateway.audit.record import AccessRecord
from gateway.audit.sqlite_schema import ensure_schema, schema_version, verify_v1
from gateway.audit.store import AccessLogCorrupt, ChainBreak
from gateway.keys import PublicKey, SigningKey

T = TypeVar("T")
CATCH_UP_LIMIT = 4096  # entries another process appended that we read rather than rebuilding the edge
PRUNE_CHUNK = 2048  # entries pruned per transaction, so appends never wait long
HEAD_COLUMNS = "tree_size, root_hash, timestamp_ms, log_id, signature"


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        return conn
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")  # first: processes opening a new file at once wait for each other
    for attempt in range(50):  # switching to WAL needs a moment alone with the file
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                conn.close()
                raise
            time.sleep(0.02)
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class _Tree:
    """Reads of the tree over one connection: leaves, subtrees, heads, the right edge, a prover."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.nodes = NodeCache(self.node)

    def node(self, level: int, index: int) -> bytes | None:
        row = self.conn.execute("SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, index)).fetchone()
        return row[0] if row and isinstance(row[0], bytes) else None

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self.conn.execute("SELECT leaf_hash FROM access_log WHERE idx >= ? AND idx < ? ORDER BY idx",
                                 (start, end)).fetchall()
        return [r[0] for r in rows]

    def prover(self, windowed: bool = False) -> Prover:
        return Prover(WindowedLeaves(self.leaf_hashes) if windowed else self, self.nodes, batch_level=NODE_LEVEL)

    def tail(self) -> tuple[int, bytes]:
        """The size of the tree and the root stored with its last entry."""
        row = self.conn.execute("SELECT idx, tree_root FROM access_log ORDER BY idx DESC LIMIT 1").fetchone()
        return (row[0] + 1, row[1]) if row else (0, EMPTY_ROOT)

    def count(self) -> int:
        return self.tail()[0]

    def head_rows(self, where: str = "", args: tuple[int, ...] = ()) -> list[HeadRow]:
        return self.conn.execute(f"SELECT {HEAD_COLUMNS} FROM tree_heads {where}", args).fetchall()

    def latest_head(self) -> SignedTreeHead | None:
        rows = self.head_rows("ORDER BY tree_size DESC LIMIT 1")
        return self._parse(rows[0]) if rows else None

    def head(self, tree_size: int) -> SignedTreeHead | None:
        rows = self.head_rows("WHERE tree_size = ?", (tree_size,))
        return self._parse(rows[0]) if rows else None

    @staticmethod
    def _parse(row: HeadRow) -> SignedTreeHead:
        try:
            return head_from_row(row)
        except ValueError as exc:
            raise AccessLogCorrupt(f"the stored tree head of size {row[0]!r} is malformed: {exc}") from exc

    def right_edge(self, cached: CompactRange | None) -> CompactRange:
        """The compact range of the whole stored tree, from ``cached`` when it still describes it."""
        size, root = self.tail()
        edge = cached
        if edge is not None and edge.size < size <= edge.size + CATCH_UP_LIMIT:  # another process appended
            leaves = self.leaf_hashes(edge.size, size)
            edge = CompactRange(edge.size, edge.hashes)
            try:
                edge.extend(leaves)
            except ValueError:
                edge = None
        if edge is None or edge.size != size or edge.root() != root:
            edge = self.prover().compact_range(size)
            if edge.root() != root:
                raise AccessLogCorrupt(f"the stored tree does not add up at entry {size - 1}: run "
                                       "`anss-gateway audit verify`")
        return edge

    def entries(self, start: int, end: int) -> list[bytes | None]:
        self._check_range(start, end)
        rows = self.conn.execute("SELECT entry FROM access_log WHERE idx >= ? AND idx < ? ORDER BY idx",
                                 (start, end)).fetchall()
        return [r[0] for r in rows]

    def checked_leaf_hashes(self, start: int, end: int) -> list[bytes]:
        self._check_range(start, end)
        return self.leaf_hashes(start, end)

    def _check_range(self, start: int, end: int) -> None:
        if not 0 <= start <= end <= self.count():
            raise IndexError(f"no entries {start}..{end - 1} in a log of {self.count()}")

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        if tree_size > self.count():
            raise ValueError(f"the log has fewer than {tree_size} entries")
        return self.prover().inclusion_proof(index, tree_size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if new_size > self.count():
            raise ValueError(f"the log has fewer than {new_size} entries")
        return self.prover().consistency_proof(old_size, new_size)


class SqliteAccessLog:
    """``AccessLog`` over one SQLite file; see the module docstring for the threads and the tree."""

    def __init__(self, path: Path, *, trusted_keys: Callable[[], Mapping[str, PublicKey]] | None = None,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.path = path
        self.trusted_keys = trusted_keys
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log-read")
        self._auditor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log-audit")
        self._write_tree: _Tree | None = None
        self._read_tree: _Tree | None = None
        self._edge: CompactRange | None = None  # the right edge after our last commit (writer thread only)
        self._pending: list[tuple[bytes | BaseException, asyncio.Future[int], asyncio.AbstractEventLoop]] = []
        self._lock = threading.Lock()

    async def _write(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    # --- lifecycle ------------------------------------------------------------------------------------------------

    async def open(self) -> None:
        await self._write(self._open_writer)
        await self._read(self._open_reader)

    def _open_writer(self) -> None:
        conn = connect(self.path)
        try:
            ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._write_tree = _Tree(conn)

    def _open_reader(self) -> None:
        self._read_tree = _Tree(connect(self.path))

    async def close(self) -> None:
        for tree, executor in ((self._read_tree, self._reader), (self._write_tree, self._writer)):
            if tree is not None:
                await asyncio.get_running_loop().run_in_executor(executor, tree.conn.close)
        self._read_tree = self._write_tree = None
        for executor in (self._reader, self._writer, self._auditor):
            executor.shutdown(wait=True)

    def _writing(self) -> _Tree:
        if self._write_tree is None:
            raise RuntimeError("open() the access log first")
        return self._write_tree

    def _reading(self) -> _Tree:
        if self._read_tree is None:
            raise RuntimeError("open() the access log first")
        return self._read_tree

    # --- appending (group commit) ---------------------------------------------------------------------------------

    async def append(self, record: AccessRecord) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        try:
            entry: bytes | BaseException = record.canonical()
        except Exception as exc:  # this record alone fails; it never joins (and spoils) a batch
            entry = exc
        with self._lock:
            self._pending.append((entry, future, loop))
            first = len(self._pending) == 1
        if first:  # one flush drains everything queued meanwhile
            loop.run_in_executor(self._writer, self._flush)
        return await future

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        entries: list[bytes] = []
        outcomes: list[tuple[asyncio.Future[int], asyncio.AbstractEventLoop, int | BaseException]] = []
        for entry, future, loop in batch:
            if isinstance(entry, bytes):
                entries.append(entry)
            else:
                outcomes.append((future, loop, entry))
        if entries:
            waiting = [(f, loop) for e, f, loop in batch if isinstance(e, bytes)]
            try:
                indices: list[int] | BaseException = self._commit(entries)
            except BaseException as exc:
                indices = exc
            for i, (future, loop) in enumerate(waiting):
                outcomes.append((future, loop, indices if isinstance(indices, BaseException) else indices[i]))
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]] = {}
        for future, loop, outcome in outcomes:
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, settled in by_loop.items():  # one wake-up per event loop, not one per entry
            loop.call_soon_threadsafe(_settle, settled)

    def _commit(self, entries: Sequence[bytes]) -> list[int]:
        tree = self._writing()
        conn = tree.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            edge = tree.right_edge(self._edge)  # read under the write lock: another process may have appended
            rows: list[tuple[int, bytes, bytes, bytes]] = []
            nodes: list[tuple[int, int, bytes]] = []
            for entry in entries:
                leaf = merkle_leaf_hash(entry)
                index = edge.size
                nodes.extend((n.level, n.index, n.hash) for n in edge.append(leaf) if n.level >= NODE_LEVEL)
                rows.append((index, entry, leaf, edge.root()))
            conn.executemany("INSERT INTO access_log (idx, entry, leaf_hash, tree_root) VALUES (?, ?, ?, ?)", rows)
            if nodes:
                conn.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
            conn.execute("COMMIT")
        except BaseException:
            self._edge = None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._edge = edge
        return [r[0] for r in rows]

    # --- tree heads -----------------------------------------------------------------------------------------------

    async def issue_tree_head(self, key: SigningKey, log_id: str) -> SignedTreeHead | None:
        return await self._write(self._issue, key, log_id)

    def _issue(self, key: SigningKey, log_id: str) -> SignedTreeHead | None:
        tree = self._writing()
        conn = tree.conn
        conn.execute("BEGIN IMMEDIATE")  # one signer at a time, across processes: one head per size, ever
        try:
            latest = tree.latest_head()
            edge = tree.right_edge(self._edge)
            old = latest.head.tree_size if latest else 0
            if edge.size < old:
                raise AccessLogCorrupt(f"the log has {edge.size} entries but a signed tree head covers {old}: "
                                       "truncated; run `anss-gateway audit verify`")
            if edge.size == old and latest is not None:  # (an empty log gets its first head, of size 0)
                conn.execute("ROLLBACK")
                return None
            root = edge.root()
            if latest is not None:
                if latest.head.log_id != log_id:
                    raise ValueError(f"this log's tree heads are for log {latest.head.log_id!r}, not {log_id!r}")
                proof = tree.prover().consistency_proof(old, edge.size)
                if not verify_consistency(old, edge.size, latest.head.root_hash, root, proof):
                    raise AccessLogCorrupt(f"the stored tree no longer extends the signed tree head of size {old}:"
                                           " run `anss-gateway audit verify`")
            timestamp = max(self._clock_ms(), latest.head.timestamp_ms if latest else 0)
            signed = TreeHead(edge.size, root, timestamp, log_id).sign(key)
            conn.execute(f"INSERT INTO tree_heads ({HEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                         (edge.size, root, timestamp, log_id, signed.signature))
            conn.execute("COMMIT")
        except BaseException:
            self._edge = None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._edge = edge
        return signed

    async def latest_tree_head(self) -> SignedTreeHead | None:
        return await self._read(lambda: self._reading().latest_head())

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

    # --- verification, export, retention -------------------------------------------------------------------------

    async def verify(self, keys: Mapping[str, PublicKey] | None = None) -> ChainBreak | None:
        if keys is None and self.trusted_keys is not None:
            keys = self.trusted_keys()
        return await asyncio.get_running_loop().run_in_executor(self._auditor, verify_database, self.path, keys)

    async def export(self, out: TextIO, *, inclusion_proofs: bool = True,
                     consistency_proofs: bool = True) -> SignedTreeHead:
        return await asyncio.get_running_loop().run_in_executor(
            self._auditor, lambda: export_database(self.path, out.write, inclusion_proofs=inclusion_proofs,
                                                   consistency_proofs=consistency_proofs))

    async def prune(self, before: datetime) -> int:
        if before.tzinfo is None:
            before = before.replace(tzinfo=UTC)
        return await self._write(self._prune, before)

    def _prune(self, before: datetime) -> int:
        conn = self._writing().conn
        total = 0
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                latest = self._writing().latest_head()
                covered = latest.head.tree_size if latest else 0  # only what a signed head vouches for
                first = _first_kept(conn, covered)
                rows = conn.execute("SELECT idx, entry FROM access_log WHERE idx >= ? AND idx < ? ORDER BY idx",
                                    (first, min(first + PRUNE_CHUNK, covered))).fetchall()
                cut = first
                for idx, entry in rows:
                    if entry is not None and not _dated_before(entry, before):
                        break
                    cut = idx + 1
                if cut > first:
                    total += conn.execute("UPDATE access_log SET entry = NULL WHERE idx >= ? AND idx < ? "
                                          "AND entry IS NOT NULL", (first, cut)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if cut < first + PRUNE_CHUNK or cut >= covered:
                return total


def _first_kept(conn: sqlite3.Connection, limit: int) -> int:
    """The first index below ``limit`` whose payload is kept (pruned entries form a prefix): a binary search."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute("SELECT entry IS NULL FROM access_log WHERE idx = ?", (mid,)).fetchone()
        if row is not None and row[0]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _dated_before(entry: bytes, before: datetime) -> bool:
    """Whether the entry's ``time`` is before ``before``; an entry without a readable time is never pruned."""
    try:
        value = orjson.loads(entry).get("time")
        moment = datetime.fromisoformat(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) < before


def _settle(settled: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    for future, outcome in settled:
        if future.done():  # cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


# --- whole-file operations (also used by the CLI, without a running store) --------------------------------------------


def verify_database(path: Path, keys: Mapping[str, PublicKey] | None = None) -> ChainBreak | None:
    """Recompute the whole log (``gateway.audit.recompute``); the first bad index, or None if it verifies.

    Tree-head signatures are checked when ``keys`` (kid → public key) are given. A v1 file (hash chain, not yet
    migrated) is checked as a chain."""
    conn = connect(path, read_only=True)
    try:
        conn.execute("BEGIN")  # one snapshot, while appends go on
        version = schema_version(conn)
        if version == 1:
            return verify_v1(conn)[0]
        if version != 2:
            return ChainBreak(0, f"not an access log of a known schema (version {version})")
        tree = _Tree(conn)

        def first_node_beyond(size: int) -> tuple[int, int] | None:
            row = conn.execute("SELECT level, idx FROM merkle_nodes WHERE ((idx + 1) << level) > ? "
                               "ORDER BY level, idx LIMIT 1", (size,)).fetchone()
            return (row[0], row[1]) if row else None

        rows = conn.execute("SELECT idx, entry, leaf_hash, tree_root FROM access_log ORDER BY idx")
        return recompute(rows, tree.head_rows("ORDER BY tree_size"), keys, stored_node=tree.node,
                         stored_node_count=conn.execute("SELECT COUNT(*) FROM merkle_nodes").fetchone()[0],
                         first_node_beyond=first_node_beyond)
    finally:
        conn.close()


def export_database(path: Path, write: Callable[[str], object], *, inclusion_proofs: bool = True,
                    consistency_proofs: bool = True) -> SignedTreeHead:
    """Write the export up to the latest signed tree head and return that head (see ``AccessLog.export``)."""
    conn = connect(path, read_only=True)
    try:
        conn.execute("BEGIN")
        if schema_version(conn) != 2:
            raise AccessLogCorrupt("not an access log of schema version 2: open it with the gateway first")
        tree = _Tree(conn)
        heads = [_Tree._parse(row) for row in tree.head_rows("ORDER BY tree_size")]
        if not heads:
            raise ValueError("the log has no signed tree head yet: issue one first")
        rows: Iterable[ExportRow] = conn.execute(
            "SELECT idx, entry, leaf_hash FROM access_log WHERE idx < ? ORDER BY idx", (heads[-1].head.tree_size,))
        export_rows(write, rows, heads, tree.prover(windowed=True), inclusion_proofs=inclusion_proofs,
                    consistency_proofs=consistency_proofs)
        return heads[-1]
    finally:
        conn.close()


@dataclass(frozen=True)
class LogStatus:
    entries: int
    pruned: int  # pruned entries form a prefix: 0 .. pruned - 1
    heads: int
    latest: SignedTreeHead | None


def database_status(path: Path) -> LogStatus:
    """Size, pruned prefix and tree heads of a log file (for people; ``verify_database`` for trust)."""
    conn = connect(path, read_only=True)
    try:
        conn.execute("BEGIN")
        tree = _Tree(conn)
        count = tree.count()
        heads = int(conn.execute("SELECT COUNT(*) FROM tree_heads").fetchone()[0])
        return LogStatus(count, _first_kept(conn, count), heads, tree.latest_head())
    finally:
        conn.close()
