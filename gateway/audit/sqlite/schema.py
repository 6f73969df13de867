"""The SQLite layout of the access log (schema v6: a Merkle tree log, its signed checkpoints, its search index
and its hourly aggregates) and the migrations from v5 (without the aggregates), v4 (without the checkpoints),
v3 (the index without its co-subjects table), v2 (the tree
without the index) and v1 (a hash chain).

Tables (docs/merkle-log.md section 8)::

    meta(key PK, value)                              schema_version = 6; migration notes
    access_log(idx PK, entry NULL, leaf_hash, tree_root)
    merkle_nodes(level, idx, hash)  PK (level, idx)  complete subtrees of 2^level leaves, level >= 6
    tree_heads(tree_size PK, root_hash, timestamp_ms, log_id, signature)
    checkpoints(tree_size PK, note)                  a head's C2SP checkpoint note with its cosignatures
    access_index, access_index_checks, access_index_sources, access_index_persons
                                                     the search index (gateway.audit.sqlite.search)
    access_hourly                                    the hourly aggregates (gateway.audit.sqlite.aggregates)

Triggers refuse every UPDATE and DELETE on the first four, with one exception: an UPDATE of ``access_log`` that
sets a present ``entry`` to NULL and changes nothing else (retention pruning). ``checkpoints`` refuses every
DELETE and every UPDATE except one that keeps the size and appends signature lines to the stored note (the
cosignatures that arrive after the head was signed): the new note starts with the whole old one and adds no
blank line. The index is derived data
outside the tree, checked against the entries by ``audit verify``; its own triggers allow deleting only the
rows of pruned entries.

A v5 file gains ``access_hourly``, built from the kept entries, in one transaction when it is opened
(``_add_hourly``; every older version takes it last). A v4 file first gains the empty ``checkpoints`` table
and its triggers (``_add_checkpoints``), nothing else. A v3 file
gains ``access_index_persons`` (the co-subjects of each entry) in one transaction when it is opened,
filled from the kept entries; the tree and the rest of the index are not touched, and a v3 file still verifies
as it is (a missing table reads as empty). A v2 file gains the whole index likewise.

A v1 file (``access_log`` with a ``chain_hash`` column, no ``meta``) is migrated in one transaction when it is
opened: the chain is verified first (a broken v1 log is never migrated: it would launder the break), then each
row keeps its index, entry and leaf hash, gains its tree root, and the subtrees are computed. The last chain
hash is kept in ``meta`` (``v1_chain_head``) so anyone who noted it can still check it.
"""

from __future__ import annotations

import sqlite3

from gateway.audit.merkle import CompactRange
from gateway.audit.recompute import NODE_LEVEL
from gateway.audit.record import GENESIS, chain_hash, leaf_hash
from gateway.audit.sqlite.aggregates import HOURLY_TABLE, build_hourly
from gateway.audit.sqlite.search import (
    INDEX_TABLES,
    INDEX_TRIGGERS,
    INDEXES,
    PERSONS_TABLE,
    build_index,
    build_persons,
)
from gateway.audit.store import AccessLogCorrupt, ChainBreak

SCHEMA_VERSION = 6
TREE_VERSIONS = (2, 3, 4, 5, 6)  # the tree's layout is the same in all: verification and export read any
INDEXED_VERSIONS = (3, 4, 5, 6)  # with a search index to check
CHECKPOINT_VERSIONS = (5, 6)  # with the heads' checkpoint notes
AGGREGATED_VERSIONS = (6,)  # with hourly aggregates to check
APPEND_ONLY = "the access log is append-only"

TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS access_log (
        idx INTEGER PRIMARY KEY,    -- the leaf index: 0, 1, 2, ...
        entry BLOB,                 -- AccessRecord.canonical(); NULL once pruned
        leaf_hash BLOB NOT NULL,    -- SHA-256(0x00 || entry), kept when pruned
        tree_root BLOB NOT NULL     -- MTH of entries 0 .. idx: what a tree head of size idx + 1 signs
    )""",
    """CREATE TABLE IF NOT EXISTS merkle_nodes (
        level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS tree_heads (
        tree_size INTEGER PRIMARY KEY, root_hash BLOB NOT NULL, timestamp_ms INTEGER NOT NULL,
        log_id TEXT NOT NULL, signature TEXT NOT NULL
    )""",
)
CHECKPOINTS_TABLE = """CREATE TABLE IF NOT EXISTS checkpoints (
        tree_size INTEGER PRIMARY KEY,  -- the size of the tree head it states (tree_heads.tree_size)
        note TEXT NOT NULL              -- the C2SP signed note: the log's signature, then the cosignatures
    )"""  # schema v5
CHECKPOINT_TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
    WHEN NOT (NEW.tree_size IS OLD.tree_size AND length(NEW.note) > length(OLD.note)
              AND substr(NEW.note, 1, length(OLD.note)) = OLD.note
              AND instr(substr(NEW.note, length(OLD.note) + 1), char(10) || char(10)) = 0)
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY} (a checkpoint may only gain signature lines)'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
)

TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
    WHEN NOT (NEW.entry IS NULL AND OLD.entry IS NOT NULL AND NEW.idx IS OLD.idx
              AND NEW.leaf_hash IS OLD.leaf_hash AND NEW.tree_root IS OLD.tree_root)
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY} (pruning may only clear an entry''s payload)'); END""",
    *(f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{verb} BEFORE {verb.upper()} ON {table}
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"""
      for table in ("access_log", "merkle_nodes", "tree_heads", "meta") for verb in ("update", "delete")
      if (table, verb) != ("access_log", "update")),
)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def schema_version(conn: sqlite3.Connection) -> int:
    """0: no log yet; 1: the v1 hash chain; otherwise ``meta.schema_version``."""
    tables = _tables(conn)
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0
    return 1 if "access_log" in tables else 0


def ensure_schema(conn: sqlite3.Connection) -> int:
    """Create or migrate the schema inside one write transaction (several processes may open at once);
    return the version found (0 when created, 1 to 5 when migrated, 6 when already current)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)
        if found > SCHEMA_VERSION:
            raise AccessLogCorrupt(f"the access log has schema version {found}; this gateway knows up to "
                                   f"{SCHEMA_VERSION}")
        if found == 1:
            _migrate_v1(conn)
        elif found in (2, 3, 4, 5):
            if found == 2:
                _migrate_v2(conn)
            elif found == 3:
                _migrate_v3(conn)
            if found <= 4:
                _add_checkpoints(conn)
            _add_hourly(conn)
            _set_version(conn)
        elif found == 0:
            _create(conn, ())
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def _create(conn: sqlite3.Connection, notes: tuple[tuple[str, str], ...]) -> None:
    for statement in (*TABLES, CHECKPOINTS_TABLE, *INDEX_TABLES, *INDEXES, HOURLY_TABLE):
        conn.execute(statement)
    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                     [("schema_version", str(SCHEMA_VERSION)), *notes])
    for statement in (*TRIGGERS, *CHECKPOINT_TRIGGERS, *INDEX_TRIGGERS):
        conn.execute(statement)


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """Add the search index, built from the kept entries; the tree is not touched."""
    for statement in INDEX_TABLES:
        conn.execute(statement)
    build_index(conn)
    for statement in (*INDEXES, *INDEX_TRIGGERS):
        conn.execute(statement)


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """Add the co-subjects' table of the index, filled from the kept entries; nothing else is touched."""
    conn.execute(PERSONS_TABLE)
    build_persons(conn)
    for statement in INDEX_TRIGGERS:  # (IF NOT EXISTS: only the new table's are created)
        conn.execute(statement)


def _add_checkpoints(conn: sqlite3.Connection) -> None:
    """v4 → v5: the table of the heads' checkpoint notes, empty, and its triggers; nothing else is touched."""
    for statement in (CHECKPOINTS_TABLE, *CHECKPOINT_TRIGGERS):
        conn.execute(statement)


def _add_hourly(conn: sqlite3.Connection) -> None:
    """v5 → v6: the hourly aggregates, built from the kept entries; nothing else is touched (the caller sets the
    version). Pruned entries are gone: their hours start from what is kept. Derived data: built anew."""
    conn.execute("DROP TABLE IF EXISTS access_hourly")
    conn.execute(HOURLY_TABLE)
    build_hourly(conn)


def _set_version(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TRIGGER meta_no_update")  # the one change ever made to meta, then the trigger is back
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    conn.execute(next(t for t in TRIGGERS if "meta_no_update" in t))


def verify_v1(conn: sqlite3.Connection) -> tuple[ChainBreak | None, bytes, int]:
    """Recompute a v1 hash chain: (the first break or None, the last chain hash, the number of rows)."""
    previous, count = GENESIS, 0
    for expected, (idx, entry, leaf, chained) in enumerate(
            conn.execute("SELECT idx, entry, leaf_hash, chain_hash FROM access_log ORDER BY idx")):
        if idx != expected:
            return ChainBreak(expected, f"entry {expected} is missing"), previous, count
        if not all(isinstance(v, bytes) for v in (entry, leaf, chained)):
            return ChainBreak(idx, "entry is not stored as written (column type changed)"), previous, count
        if leaf_hash(entry) != leaf:
            return ChainBreak(idx, "entry content does not match its leaf hash (altered)"), previous, count
        previous = chain_hash(previous, leaf)
        if previous != chained:
            return ChainBreak(idx, "chain hash does not follow from the previous entry"), previous, count
        count += 1
    return None, previous, count


def _migrate_v1(conn: sqlite3.Connection) -> None:
    problem, chain_head, count = verify_v1(conn)
    if problem is not None:
        raise AccessLogCorrupt(f"the v1 access log is broken at entry {problem.index} ({problem.reason}); it was "
                               "not migrated: move the file aside and keep it as evidence")
    conn.execute("DROP TRIGGER IF EXISTS access_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS access_log_no_delete")
    conn.execute("ALTER TABLE access_log RENAME TO access_log_v1")
    _create(conn, (("migrated_from", "v1 hash chain"), ("v1_chain_head", chain_head.hex()),
                   ("v1_entries", str(count))))
    edge = CompactRange()
    cursor = conn.execute("SELECT idx, entry, leaf_hash FROM access_log_v1 ORDER BY idx")
    while batch := cursor.fetchmany(4096):
        rows: list[tuple[int, bytes, bytes, bytes]] = []
        nodes: list[tuple[int, int, bytes]] = []
        for idx, entry, leaf in batch:
            nodes.extend((n.level, n.index, n.hash) for n in edge.append(leaf) if n.level >= NODE_LEVEL)
            rows.append((idx, entry, leaf, edge.root()))
        conn.executemany("INSERT INTO access_log (idx, entry, leaf_hash, tree_root) VALUES (?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
    conn.execute("DROP TABLE access_log_v1")
    build_index(conn)
    build_hourly(conn)
