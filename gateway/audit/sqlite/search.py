"""The SQLite search index of the access log and ``search`` over it (``LogQuery`` → ``LogPage``).

Tables, written in the same transaction as the entries they describe (docs/merkle-log.md section 8)::

    access_index(idx PK, time_us, time_hw, client, purpose, case_ref, outcome, subject)
    access_index_checks(name, idx)   PK (name, idx)     one row per check an entry names
    access_index_sources(name, idx)  PK (name, idx)     one row per source an entry names
    access_index_persons(name, idx)  PK (name, idx)     one row per co-subject pseudonym an entry names (v4)

Every equality filter has an index ending in the entry's index (SQLite appends the rowid), so "matching X,
newest first, below the cursor" is one backward index range scan that stops after a page. A time range adds
``idx >= lo`` where ``lo`` is the first index whose time high-water mark reaches ``since`` (one lookup; see
``gateway.audit.search_index``), so a scan never goes below the window.

The index is derived data, outside the tree: export never reads it; verification checks it against the
entries (``index_streams`` here, ``gateway.audit.index_check``). Retention deletes the index rows of pruned
entries in the pruning transaction (the index holds the same fields as the entry), and
a trigger refuses to delete the index row of an entry whose payload is still kept, or to change one. A
search joins ``access_log`` and returns the entry bytes decoded, skipping any whose payload is gone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

import orjson

from gateway.audit.index_check import IndexStreams, NamesRow
from gateway.audit.query import LogPage, LogQuery
from gateway.audit.search_index import SQLITE, IndexFields, hit, index_fields, search_statement

PERSONS_TABLE = """CREATE TABLE IF NOT EXISTS access_index_persons (
        name TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (name, idx)
    ) WITHOUT ROWID"""  # schema v4: the co-subjects
INDEX_TABLES = (
    """CREATE TABLE IF NOT EXISTS access_index (
        idx INTEGER PRIMARY KEY,    -- access_log.idx
        time_us INTEGER,            -- the entry's time, microseconds since the epoch (UTC)
        time_hw INTEGER,            -- the largest time_us of entries 0 .. idx: never decreases along the log
        client TEXT, purpose TEXT, case_ref TEXT, outcome TEXT, subject TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS access_index_checks (
        name TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (name, idx)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS access_index_sources (
        name TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (name, idx)
    ) WITHOUT ROWID""",
    PERSONS_TABLE,
)
CHILD_TABLES = ("access_index_checks", "access_index_sources", "access_index_persons")

# A migration creates them after filling the tables (faster than maintaining them row by row).
INDEXES = (
    *(f"CREATE INDEX IF NOT EXISTS access_index_{column} ON access_index ({column})"
      for column in ("time_hw", "client", "purpose", "case_ref", "outcome", "subject")),
    # the entries whose time lies below the high-water mark before them, by how far: MAX is one lookup
    "CREATE INDEX IF NOT EXISTS access_index_late ON access_index (time_hw - time_us) WHERE time_us < time_hw",
)

_KEPT = "(SELECT entry FROM access_log WHERE idx = OLD.idx) IS NOT NULL"
INDEX_TRIGGERS = (
    *(f"""CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
    BEGIN SELECT RAISE(ABORT, 'the access log index follows the log: it is never changed'); END"""
      for table in ("access_index", *CHILD_TABLES)),
    *(f"""CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} WHEN {_KEPT}
    BEGIN SELECT RAISE(ABORT, 'the index of a kept entry is never deleted (only pruning removes it)'); END"""
      for table in ("access_index", *CHILD_TABLES)),
)


def create_index_schema(conn: sqlite3.Connection) -> None:
    for statement in (*INDEX_TABLES, *INDEXES, *INDEX_TRIGGERS):
        conn.execute(statement)


def last_high_water(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT time_hw FROM access_index ORDER BY idx DESC LIMIT 1").fetchone()
    return row[0] if row else None


def write_index(conn: sqlite3.Connection, rows: Iterable[tuple[int, IndexFields]],
                high_water: int | None) -> int | None:
    """Insert the index rows of entries (in index order) after one whose high-water mark is ``high_water``;
    return the new high-water mark. Runs inside the caller's transaction."""
    main: list[tuple[object, ...]] = []
    checks: list[tuple[str, int]] = []
    sources: list[tuple[str, int]] = []
    persons: list[tuple[str, int]] = []
    for idx, f in rows:
        if f.time_us is not None and (high_water is None or f.time_us > high_water):
            high_water = f.time_us
        main.append((idx, f.time_us, high_water, f.client, f.purpose, f.case_ref, f.outcome, f.subject))
        checks.extend((name, idx) for name in f.checks)
        sources.extend((name, idx) for name in f.sources)
        persons.extend((name, idx) for name in f.persons)
    conn.executemany("INSERT INTO access_index (idx, time_us, time_hw, client, purpose, case_ref, outcome, subject) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", main)
    if checks:
        conn.executemany("INSERT INTO access_index_checks (name, idx) VALUES (?, ?)", checks)
    if sources:
        conn.executemany("INSERT INTO access_index_sources (name, idx) VALUES (?, ?)", sources)
    if persons:
        conn.executemany("INSERT INTO access_index_persons (name, idx) VALUES (?, ?)", persons)
    return high_water


def build_index(conn: sqlite3.Connection) -> int:
    """Index every kept entry of ``access_log`` (a migration, inside its transaction); return how many."""
    high_water: int | None = None
    count = 0
    cursor = conn.execute("SELECT idx, entry FROM access_log WHERE entry IS NOT NULL ORDER BY idx")
    while batch := cursor.fetchmany(4096):
        high_water = write_index(conn, ((idx, index_fields(entry)) for idx, entry in batch), high_water)
        count += len(batch)
    return count


def build_persons(conn: sqlite3.Connection) -> int:
    """Fill ``access_index_persons`` from the kept entries (the v3 to v4 migration, inside its transaction)."""
    count = 0
    cursor = conn.execute("SELECT idx, entry FROM access_log WHERE entry IS NOT NULL AND instr(entry, ?) > 0 "
                          "ORDER BY idx", (b'"co_subjects"',))
    while batch := cursor.fetchmany(4096):
        rows = [(name, idx) for idx, entry in batch for name in index_fields(entry).persons]
        conn.executemany("INSERT INTO access_index_persons (name, idx) VALUES (?, ?)", rows)
        count += len(rows)
    return count


def drop_pruned(conn: sqlite3.Connection, pruned: Sequence[tuple[int, bytes]]) -> None:
    """Delete the index rows of entries whose payload was just pruned (their former bytes given, so the rows of
    the check and source tables are found by their primary key). Runs inside the pruning transaction."""
    checks: list[tuple[str, int]] = []
    sources: list[tuple[str, int]] = []
    persons: list[tuple[str, int]] = []
    for idx, entry in pruned:
        fields = index_fields(entry)
        checks.extend((name, idx) for name in fields.checks)
        sources.extend((name, idx) for name in fields.sources)
        persons.extend((name, idx) for name in fields.persons)
    conn.executemany("DELETE FROM access_index_checks WHERE name = ? AND idx = ?", checks)
    conn.executemany("DELETE FROM access_index_sources WHERE name = ? AND idx = ?", sources)
    conn.executemany("DELETE FROM access_index_persons WHERE name = ? AND idx = ?", persons)
    conn.executemany("DELETE FROM access_index WHERE idx = ?", [(idx,) for idx, _ in pruned])


def index_streams(conn: sqlite3.Connection) -> IndexStreams:
    """The index in entry order, for ``gateway.audit.index_check`` (inside the verification's read snapshot).

    The check, source and person rows are grouped per entry by SQLite (their key is (name, idx): one sort, spilled to
    disk when large, never held here), their names as a JSON array, ``null`` for a name that is not text. A
    missing table reads as empty, so its entries are reported as missing from the index."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def names(table: str) -> Iterator[NamesRow]:
        if table in tables:
            for idx, listed in conn.execute(f"SELECT idx, json_group_array(CASE WHEN typeof(name) = 'text' THEN "
                                            f"name END) FROM {table} GROUP BY idx ORDER BY idx"):
                yield idx, orjson.loads(listed)

    rows = conn.execute("SELECT idx, time_us, time_hw, client, purpose, case_ref, outcome, subject FROM "
                        "access_index ORDER BY idx") if "access_index" in tables else iter(())
    return IndexStreams(rows, names("access_index_checks"), names("access_index_sources"),
                        names("access_index_persons"))


def search(conn: sqlite3.Connection, query: LogQuery) -> LogPage:
    """The page of entries matching ``query``, newest first (see ``gateway.audit.query``); the statement is
    ``search_index.search_statement``."""
    statement, args = search_statement(query, SQLITE)
    rows: Sequence[tuple[int, bytes]] = conn.execute(statement, args).fetchall()
    page = rows[:query.limit]
    more = len(rows) > query.limit
    return LogPage([hit(idx, entry) for idx, entry in page], page[-1][0] if more else None)
