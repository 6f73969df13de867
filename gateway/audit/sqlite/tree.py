"""Reading the access log's tree from a SQLite file (layout: ``gateway.audit.sqlite.schema``): leaves, stored
subtrees, tree heads, the right edge, proofs; and the whole-file operations the CLI runs without a store:
``verify_database``, ``export_database``, ``database_status``. Every function here blocks: call it from the
store's threads (``gateway.audit.sqlite.store``) or from a command, never from the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.audit.aggregates import AggregateCheck
from gateway.audit.export import ExportRow, NodeCache, WindowedLeaves, export_rows
from gateway.audit.index_check import IndexCheck
from gateway.audit.merkle import EMPTY_ROOT, CompactRange, Prover, SignedTreeHead
from gateway.audit.pacing import paced
from gateway.audit.recompute import NODE_LEVEL, HeadRow, Row, head_from_row, recompute
from gateway.audit.rules import catch_up_range, caught_up, check_edge
from gateway.audit.sqlite.aggregates import hourly_stream
from gateway.audit.sqlite.schema import (
    AGGREGATED_VERSIONS,
    CHECKPOINT_VERSIONS,
    INDEXED_VERSIONS,
    TREE_VERSIONS,
    schema_version,
    verify_v1,
)
from gateway.audit.sqlite.search import index_streams
from gateway.audit.store import AccessLogCorrupt, ChainBreak
from gateway.crypto.keys import PublicKey
from gateway.stores.files import switch_to_wal

HEAD_COLUMNS = "tree_size, root_hash, timestamp_ms, log_id, signature"


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        return conn
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")  # first: processes opening a new file at once wait for each other
    try:
        switch_to_wal(conn)
    except BaseException:
        conn.close()
        raise
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class Tree:
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

    def checkpoint(self, tree_size: int | None = None) -> str | None:
        """The checkpoint note kept for the head of ``tree_size`` entries (the largest when ``None``)."""
        row = self.conn.execute("SELECT note FROM checkpoints ORDER BY tree_size DESC LIMIT 1") if tree_size is None \
            else self.conn.execute("SELECT note FROM checkpoints WHERE tree_size = ?", (tree_size,))
        found = row.fetchone()
        return str(found[0]) if found else None

    def checkpoints(self) -> dict[int, str]:
        """Every kept checkpoint note, by size (none before schema v5)."""
        if schema_version(self.conn) not in CHECKPOINT_VERSIONS:
            return {}
        return {int(size): str(note) for size, note in self.conn.execute("SELECT tree_size, note FROM checkpoints")}

    def right_edge(self, cached: CompactRange | None) -> CompactRange:
        """The compact range of the whole stored tree, from ``cached`` when it still describes it."""
        size, root = self.tail()
        missed = catch_up_range(cached, size)  # another process appended
        edge = caught_up(cached, size, root, self.leaf_hashes(*missed) if missed else None)
        return edge or check_edge(self.prover().compact_range(size), root)

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


def first_kept(conn: sqlite3.Connection, limit: int) -> int:
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



def verify_database(path: Path, keys: Mapping[str, PublicKey] | None = None, *,
                    pace: Callable[[], None] | None = None) -> ChainBreak | None:
    """Recompute the whole log (``gateway.audit.recompute``) and check its search index against the entries in
    the same pass (``gateway.audit.index_check``); the first bad index, or None if it verifies.

    Tree-head signatures are checked when ``keys`` (kid → public key) are given. A v1 file (hash chain, not yet
    migrated) is checked as a chain; a v2 file has no index yet. ``pace`` is called between entries
    (``gateway.audit.pacing``)."""
    conn = connect(path, read_only=True)
    try:
        conn.execute("BEGIN")  # one snapshot, while appends go on
        version = schema_version(conn)
        if version == 1:
            return verify_v1(conn)[0]
        if version not in TREE_VERSIONS:
            return ChainBreak(0, f"not an access log of a known schema (version {version})")
        tree = Tree(conn)

        def first_node_beyond(size: int) -> tuple[int, int] | None:
            row = conn.execute("SELECT level, idx FROM merkle_nodes WHERE ((idx + 1) << level) > ? "
                               "ORDER BY level, idx LIMIT 1", (size,)).fetchone()
            return (row[0], row[1]) if row else None

        rows: Iterable[Row] = paced(conn.execute("SELECT idx, entry, leaf_hash, tree_root FROM access_log ORDER BY "
                                                 "idx"), pace)
        index = IndexCheck(index_streams(conn)) if version in INDEXED_VERSIONS else None  # v2: no index yet
        hourly = AggregateCheck() if version in AGGREGATED_VERSIONS else None  # before v6: no aggregates
        if hourly is not None:
            rows = hourly.watch(rows)
        found = recompute(index.watch(rows) if index else rows, tree.head_rows("ORDER BY tree_size"), keys,
                          stored_node=tree.node,
                          stored_node_count=conn.execute("SELECT COUNT(*) FROM merkle_nodes").fetchone()[0],
                          first_node_beyond=first_node_beyond)
        found = index.verdict(found) if index else found
        if hourly is not None and found is None:  # a broken tree or index already explains any disagreement
            found = hourly.verdict(hourly_stream(conn))
        return found
    finally:
        conn.close()


def export_database(path: Path, write: Callable[[str], object], *, inclusion_proofs: bool = True,
                    consistency_proofs: bool = True) -> SignedTreeHead:
    """Write the export up to the latest signed tree head and return that head (see ``AccessLog.export``)."""
    conn = connect(path, read_only=True)
    try:
        conn.execute("BEGIN")
        if schema_version(conn) not in TREE_VERSIONS:
            raise AccessLogCorrupt(f"not an access log of schema version {TREE_VERSIONS[0]} to {TREE_VERSIONS[-1]}: "
                                   "open it with the gateway first")
        tree = Tree(conn)
        heads = [Tree._parse(row) for row in tree.head_rows("ORDER BY tree_size")]
        if not heads:
            raise ValueError("the log has no signed tree head yet: issue one first")
        rows: Iterable[ExportRow] = conn.execute(
            "SELECT idx, entry, leaf_hash FROM access_log WHERE idx < ? ORDER BY idx", (heads[-1].head.tree_size,))
        export_rows(write, rows, heads, tree.prover(windowed=True), inclusion_proofs=inclusion_proofs,
                    consistency_proofs=consistency_proofs, checkpoints=tree.checkpoints())
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
        tree = Tree(conn)
        count = tree.count()
        heads = int(conn.execute("SELECT COUNT(*) FROM tree_heads").fetchone()[0])
        return LogStatus(count, first_kept(conn, count), heads, tree.latest_head())
    finally:
        conn.close()


def stored_roots(path: Path, sizes: Iterable[int]) -> dict[int, bytes]:
    """The stored root of the tree of each size given that the file holds (see ``LogLocation.roots``)."""
    wanted = sorted({s for s in sizes if s > 0})
    conn = connect(path, read_only=True)
    try:
        conn.execute("BEGIN")
        found: dict[int, bytes] = {}
        for start in range(0, len(wanted), 500):
            chunk = [s - 1 for s in wanted[start:start + 500]]
            marks = ",".join("?" * len(chunk))
            for idx, root in conn.execute(f"SELECT idx, tree_root FROM access_log WHERE idx IN ({marks})", chunk):
                if isinstance(root, bytes):
                    found[idx + 1] = root
        return found
    finally:
        conn.close()


def stored_checkpoints(path: Path) -> list[tuple[int, str]]:
    """Every (size, note) of the file's ``checkpoints`` table, by size (none before schema v5)."""
    conn = connect(path, read_only=True)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'").fetchone() is None:
            return []
        return [(int(size), str(note)) for size, note in
                conn.execute("SELECT tree_size, note FROM checkpoints ORDER BY tree_size")]
    finally:
        conn.close()


def stored_entry(path: Path, index: int) -> bytes | None:
    conn = connect(path, read_only=True)
    try:
        row = conn.execute("SELECT entry FROM access_log WHERE idx = ?", (index,)).fetchone()
        return row[0] if row and isinstance(row[0], bytes) else None
    finally:
        conn.close()
