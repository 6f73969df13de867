"""The SQLite search index of the access log and ``search`` over it (``LogQuery`` → ``LogPage``).

Tables, written in the same transaction as the entries they describe (docs/merkle-log.md section 8)::

    access_index(idx PK, time_us, time_hw, client, purpose, case_ref, outcome, subject)
    access_index_checks(name, idx)   PK (name, idx)     one row per check an entry names
    access_index_sources(name, idx)  PK (name, idx)     one row per source an entry names

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
from gateway.audit.search_index import IndexFields, hit, index_fields, micros

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
)

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
      for table in ("access_index", "access_index_checks", "access_index_sources")),
    *(f"""CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} WHEN {_KEPT}
    BEGIN SELECT RAISE(ABORT, 'the index of a kept entry is never deleted (only pruning removes it)'); END"""
      for table in ("access_index", "access_index_checks", "access_index_sources")),
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
    for idx, f in rows:
        if f.time_us is not None and (high_water is None or f.time_us > high_water):
            high_water = f.time_us
        main.append((idx, f.time_us, high_water, f.client, f.purpose, f.case_ref, f.outcome, f.subject))
        checks.extend((name, idx) for name in f.checks)
        sources.extend((name, idx) for name in f.sources)
    conn.executemany("INSERT INTO access_index (idx, time_us, time_hw, client, purpose, case_ref, outcome, subject) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", main)
    if checks:
        conn.executemany("INSERT INTO access_index_checks (name, idx) VALUES (?, ?)", checks)
    if sources:
        conn.executemany("INSERT INTO access_index_sources (name, idx) VALUES (?, ?)", sources)
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


def drop_pruned(conn: sqlite3.Connection, pruned: Sequence[tuple[int, bytes]]) -> None:
    """Delete the index rows of entries whose payload was just pruned (their former bytes given, so the rows of
    the check and source tables are found by their primary key). Runs inside the pruning transaction."""
    checks: list[tuple[str, int]] = []
    sources: list[tuple[str, int]] = []
    for idx, entry in pruned:
        fields = index_fields(entry)
        checks.extend((name, idx) for name in fields.checks)
        sources.extend((name, idx) for name in fields.sources)
    conn.executemany("DELETE FROM access_index_checks WHERE name = ? AND idx = ?", checks)
    conn.executemany("DELETE FROM access_index_sources WHERE name = ? AND idx = ?", sources)
    conn.executemany("DELETE FROM access_index WHERE idx = ?", [(idx,) for idx, _ in pruned])


def index_streams(conn: sqlite3.Connection) -> IndexStreams:
    """The index in entry order, for ``gateway.audit.index_check`` (inside the verification's read snapshot).

    The check and source rows are grouped per entry by SQLite (their key is (name, idx): one sort, spilled to
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
    return IndexStreams(rows, names("access_index_checks"), names("access_index_sources"))


BIG = 2**63 - 1
CHILD_FILTERS = (("check", "access_index_checks"), ("source", "access_index_sources"))
ENTRY_FILTERS = ("client", "purpose", "case_ref", "outcome", "subject")
# The first index whose high-water mark reaches a time: the time index of the log, in one index lookup.
FIRST_REACHING = "SELECT idx FROM access_index WHERE time_hw >= ? ORDER BY time_hw LIMIT 1"
MAX_LATENESS = "SELECT COALESCE(MAX(time_hw - time_us), 0) FROM access_index WHERE time_us < time_hw"


def search(conn: sqlite3.Connection, query: LogQuery) -> LogPage:
    """The page of entries matching ``query``, newest first (see ``gateway.audit.query``).

    One statement, driven by one backward index range scan over the entry index: ``access_index`` itself
    (``access_index``, or one of its column indexes for an equality filter) — or, when the only equality
    filters are a check or a source, that table's primary key (name, idx). Every other filter is checked
    along the way. The time bounds become index bounds: entries below the first whose high-water mark
    reaches ``since`` are all older; entries from the first whose high-water mark reaches ``until`` plus the
    largest lateness in the log (how far an entry's time lies below the high-water mark before it) are all
    newer. Both are exact, so the scan stays inside the window however old it is."""
    children = [(getattr(query, name), table) for name, table in CHILD_FILTERS if getattr(query, name) is not None]
    entry_filters = [(column, getattr(query, column)) for column in ENTRY_FILTERS if getattr(query, column) is not None]
    where: list[str] = []
    args: list[object] = []
    if children and not entry_filters:  # drive from the check (or source) table: (name, idx) is its key
        (name, table), children = children[0], children[1:]
        tables, driver = f"{table} d CROSS JOIN access_index i ON i.idx = d.idx", "d"
        where.append("d.name = ?")
        args.append(name)
    else:
        tables, driver = "access_index i", "i"
    for column, value in entry_filters:
        where.append(f"i.{column} = ?")
        args.append(value)
    if query.no_client:  # the client column's index holds its NULLs too, in index order
        where.append("i.client IS NULL")
    for name, table in children:
        where.append(f"EXISTS (SELECT 1 FROM {table} x WHERE x.name = ? AND x.idx = i.idx)")
        args.append(name)
    if query.since is not None:
        where += ["i.time_us >= ?", f"{driver}.idx >= ({FIRST_REACHING})"]
        args += [micros(query.since)] * 2
    if query.until is not None:
        until = micros(query.until)
        newer = FIRST_REACHING.replace("?", f"? + ({MAX_LATENESS})")
        where += ["i.time_us < ?", f"{driver}.idx < COALESCE(({newer}), ?)"]
        args += [until, until, BIG]
    if query.cursor is not None:
        where.append(f"{driver}.idx < ?")
        args.append(query.cursor)
    where.append("a.entry IS NOT NULL")
    sql = (f"SELECT {driver}.idx, a.entry FROM {tables} CROSS JOIN access_log a ON a.idx = {driver}.idx "
           f"WHERE {' AND '.join(where)} ORDER BY {driver}.idx DESC LIMIT ?")
    rows: Sequence[tuple[int, bytes]] = conn.execute(sql, (*args, query.limit + 1)).fetchall()
    page = rows[:query.limit]
    more = len(rows) > query.limit
    return LogPage([hit(idx, entry) for idx, entry in page], page[-1][0] if more else None)
