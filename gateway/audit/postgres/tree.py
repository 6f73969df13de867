"""Whole-log operations on a PostgreSQL access log: verify, export, status — for the store and the commands.

Each runs on one blocking connection over one read snapshot (``REPEATABLE READ``, read-only), streaming the
entries through a server-side cursor into the code every store shares (``gateway.audit.recompute``,
``gateway.audit.export``), so a PostgreSQL log is judged exactly as a SQLite one: same first bad index, same
words. They block: the store runs them on a worker thread, the commands call them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import ExitStack, closing, contextmanager
from typing import Any

import psycopg
from psycopg import IsolationLevel

from gateway.audit.aggregates import AggregateCheck
from gateway.audit.export import NodeCache, WindowedLeaves, export_rows
from gateway.audit.index_check import IndexCheck, IndexStreams
from gateway.audit.merkle import EMPTY_ROOT, Prover, SignedTreeHead
from gateway.audit.pacing import paced
from gateway.audit.postgres.aggregates import HOURLY_ROWS
from gateway.audit.recompute import NODE_LEVEL, HeadRow, head_from_row, recompute
from gateway.audit.sqlite.tree import LogStatus
from gateway.audit.store import AccessLogCorrupt, ChainBreak
from gateway.crypto.keys import PublicKey
from gateway.stores.postgres import PostgresTarget

HEAD_COLUMNS = "tree_size, root_hash, timestamp_ms, log_id, signature"
FETCH_ROWS = 2000  # rows per round trip of a streamed read


class MissingLog(LookupError):
    """The schema holds no access log."""


def parse_head(row: HeadRow) -> SignedTreeHead:
    try:
        return head_from_row(row)
    except ValueError as exc:
        raise AccessLogCorrupt(f"the stored tree head of size {row[0]!r} is malformed: {exc}") from exc


class SyncTree:
    """Reads of the tree over one blocking connection (inside the snapshot the caller opened)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def node(self, level: int, index: int) -> bytes | None:
        row = self.conn.execute("SELECT hash FROM merkle_nodes WHERE level = %s AND idx = %s",
                                (level, index)).fetchone()
        return row[0] if row and isinstance(row[0], bytes) else None

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self.conn.execute("SELECT leaf_hash FROM access_log WHERE idx >= %s AND idx < %s ORDER BY idx",
                                 (start, end)).fetchall()
        return [r[0] for r in rows]

    def checkpoints(self) -> dict[int, str]:
        """Every kept checkpoint note, by size (none in a schema before version 3)."""
        found = self.conn.execute("SELECT to_regclass('checkpoints') IS NOT NULL").fetchone()
        if not found or not found[0]:
            return {}
        return {int(size): str(note) for size, note in self.conn.execute("SELECT tree_size, note FROM checkpoints")}

    def head_rows(self) -> list[HeadRow]:
        return self.conn.execute(f"SELECT {HEAD_COLUMNS} FROM tree_heads ORDER BY tree_size").fetchall()

    def tail(self) -> tuple[int, bytes]:
        row = self.conn.execute("SELECT idx, tree_root FROM access_log ORDER BY idx DESC LIMIT 1").fetchone()
        return (row[0] + 1, row[1]) if row else (0, EMPTY_ROOT)

    def first_kept(self, limit: int) -> int:
        """The first index below ``limit`` whose payload is kept (pruned entries form a prefix)."""
        lo, hi = 0, limit
        while lo < hi:
            mid = (lo + hi) // 2
            row = self.conn.execute("SELECT entry IS NULL FROM access_log WHERE idx = %s", (mid,)).fetchone()
            if row is not None and row[0]:
                lo = mid + 1
            else:
                hi = mid
        return lo


@contextmanager
def snapshot(target: PostgresTarget) -> Iterator[SyncTree]:
    """One read-only ``REPEATABLE READ`` transaction on the target's access log; ``MissingLog`` if none."""
    with target.connect_sync() as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            row = conn.execute("SELECT to_regclass('meta') IS NOT NULL AND to_regclass('access_log') IS NOT NULL"
                               ).fetchone()
            if not row or not row[0]:
                raise MissingLog(f"no access log in {target.describe()}")
            yield SyncTree(conn)


def _stream(tree: SyncTree, name: str, query: str, args: tuple[int, ...] = ()) -> Generator[tuple[Any, ...]]:
    with tree.conn.cursor(name=name) as cursor:
        cursor.execute(query, args)
        while rows := cursor.fetchmany(FETCH_ROWS):  # a batch at a time: the cursor's own iteration costs per row
            yield from rows


def log_exists(target: PostgresTarget) -> bool:
    try:
        with snapshot(target):
            return True
    except MissingLog:
        return False


def _index_streams(tree: SyncTree, cleanup: ExitStack) -> IndexStreams:
    """The search index in entry order (``gateway.audit.index_check``), each stream a server-side cursor of the
    snapshot; the check, source and person names grouped per entry by the server. A missing table reads as empty."""
    found = tree.conn.execute("SELECT to_regclass('access_index') IS NOT NULL, to_regclass('access_index_checks') "
                              "IS NOT NULL, to_regclass('access_index_sources') IS NOT NULL, "
                              "to_regclass('access_index_persons') IS NOT NULL").fetchone()
    present = tuple(found) if found else (False, False, False, False)

    def stream(name: str, query: str, table: int) -> Iterator[tuple[Any, ...]]:
        return cleanup.enter_context(closing(_stream(tree, name, query))) if present[table] else iter(())

    return IndexStreams(
        stream("verify_index", "SELECT idx, time_us, time_hw, client, purpose, case_ref, outcome, subject "
                               "FROM access_index ORDER BY idx", 0),
        *(stream(f"verify_{table}", f"SELECT idx, array_agg(name) FROM (SELECT idx, name FROM {table} ORDER BY idx) "
                                    "AS t GROUP BY idx ORDER BY idx", n)  # one sort, then grouped as it streams
          for n, table in ((1, "access_index_checks"), (2, "access_index_sources"), (3, "access_index_persons"))))


def verify_postgres(target: PostgresTarget, keys: Mapping[str, PublicKey] | None = None, *,
                    pace: Callable[[], None] | None = None) -> ChainBreak | None:
    """Recompute the whole log (``gateway.audit.recompute``) and check its search index against the entries in
    the same pass (``gateway.audit.index_check``); the first bad index, or None if it verifies.
    Tree-head signatures are checked when ``keys`` (kid → public key) are given."""
    with snapshot(target) as tree, ExitStack() as cleanup:  # the cursors close inside the snapshot

        def first_node_beyond(size: int) -> tuple[int, int] | None:
            row = tree.conn.execute("SELECT level, idx FROM merkle_nodes WHERE ((idx + 1) << level) > %s "
                                    "ORDER BY level, idx LIMIT 1", (size,)).fetchone()
            return (row[0], row[1]) if row else None

        count = tree.conn.execute("SELECT count(*) FROM merkle_nodes").fetchone()
        rows = cleanup.enter_context(closing(_stream(
            tree, "verify_rows", "SELECT idx, entry, leaf_hash, tree_root FROM access_log ORDER BY idx")))
        index = IndexCheck(_index_streams(tree, cleanup))
        hourly = AggregateCheck()
        found = index.verdict(recompute(index.watch(hourly.watch(paced(rows, pace))), tree.head_rows(), keys,
                                        stored_node=tree.node, stored_node_count=int(count[0]) if count else 0,
                                        first_node_beyond=first_node_beyond))
        version = tree.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if found is None and version and int(version[0]) >= 4:  # (a version 3 schema has none to check yet)
            present = tree.conn.execute("SELECT to_regclass('access_hourly') IS NOT NULL").fetchone()
            found = hourly.verdict(tree.conn.execute(HOURLY_ROWS).fetchall() if present and present[0] else ())
        return found


def export_postgres(target: PostgresTarget, write: Callable[[str], object], *, inclusion_proofs: bool = True,
                    consistency_proofs: bool = True) -> SignedTreeHead:
    """Write the export up to the latest signed tree head and return that head (see ``AccessLog.export``)."""
    with snapshot(target) as tree:
        heads = [parse_head(row) for row in tree.head_rows()]
        if not heads:
            raise ValueError("the log has no signed tree head yet: issue one first")
        notes = tree.checkpoints()
        rows = _stream(tree, "export_rows", "SELECT idx, entry, leaf_hash FROM access_log WHERE idx < %s "
                                            "ORDER BY idx", (heads[-1].head.tree_size,))
        prover = Prover(WindowedLeaves(tree.leaf_hashes), NodeCache(tree.node), batch_level=NODE_LEVEL)
        export_rows(write, rows, heads, prover, inclusion_proofs=inclusion_proofs,
                    consistency_proofs=consistency_proofs, checkpoints=notes)
        return heads[-1]


def postgres_status(target: PostgresTarget) -> LogStatus:
    """Size, pruned prefix and tree heads of the log (for people; ``verify_postgres`` for trust)."""
    with snapshot(target) as tree:
        count = tree.tail()[0]
        heads = tree.head_rows()
        return LogStatus(count, tree.first_kept(count), len(heads), parse_head(heads[-1]) if heads else None)


def stored_roots(target: PostgresTarget, sizes: Iterable[int]) -> dict[int, bytes]:
    """The stored root of the tree of each size given that the log holds (see ``LogLocation.roots``)."""
    wanted = sorted({s - 1 for s in sizes if s > 0})
    with snapshot(target) as tree:
        rows = tree.conn.execute("SELECT idx, tree_root FROM access_log WHERE idx = ANY(%s)", (wanted,)).fetchall()
        return {int(idx) + 1: bytes(root) for idx, root in rows if isinstance(root, bytes)}


def stored_checkpoints(target: PostgresTarget) -> list[tuple[int, str]]:
    """Every (size, note) of the schema's ``checkpoints`` table, by size (none before version 3)."""
    with snapshot(target) as tree:
        present = tree.conn.execute("SELECT to_regclass('checkpoints') IS NOT NULL").fetchone()
        if not (present and present[0]):
            return []
        rows = tree.conn.execute("SELECT tree_size, note FROM checkpoints ORDER BY tree_size").fetchall()
        return [(int(size), str(note)) for size, note in rows]


def stored_entry(target: PostgresTarget, index: int) -> bytes | None:
    with snapshot(target) as tree:
        row = tree.conn.execute("SELECT entry FROM access_log WHERE idx = %s", (index,)).fetchone()
        return bytes(row[0]) if row and isinstance(row[0], bytes) else None
