"""The PostgreSQL search index of the access log and ``search`` over it (``LogQuery`` → ``LogPage``).

The same layout and plan as the SQLite index (``gateway.audit.sqlite.search``; fields from
``gateway.audit.search_index``), written in the same transaction as the entries it describes::

    access_index(idx PK, time_us, time_hw, client, purpose, case_ref, outcome, subject)
    access_index_checks(name, idx)   PK (name, idx)     one row per check an entry names
    access_index_sources(name, idx)  PK (name, idx)     one row per source an entry names
    access_index_persons(name, idx)  PK (name, idx)     one row per co-subject pseudonym an entry names (v2)

Every equality filter has a btree ending in ``idx``, so "matching X, newest first, below the cursor" is one
backward index range scan that stops after a page; a check or source alone drives from its table's primary
key. The time bounds become ``idx`` bounds through ``time_hw``, the high-water mark of the times of entries
``0 .. idx`` (never decreasing along the log): entries below the first whose mark reaches ``since`` are all
older, entries from the first whose mark reaches ``until`` plus the largest lateness in the log are all newer.

The index is derived data, outside the tree: export never reads it; verification checks it against the
entries (``gateway.audit.index_check``). Retention deletes the rows of pruned entries in the pruning
transaction; triggers refuse any other change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from gateway.audit.query import LogPage, LogQuery
from gateway.audit.search_index import POSTGRES, IndexFields, hit, index_fields, search_statement

Conn = psycopg.AsyncConnection[Any]
INDEX_CHILDREN = ("access_index_checks", "access_index_sources", "access_index_persons")

INDEX_TABLES = (
    """CREATE TABLE access_index (
        idx bigint PRIMARY KEY,     -- access_log.idx
        time_us bigint,             -- the entry's time, microseconds since the epoch (UTC)
        time_hw bigint,             -- the largest time_us of entries 0 .. idx: never decreases along the log
        client text, purpose text, case_ref text, outcome text, subject text
    )""",
    *(f"CREATE TABLE {table} (name text NOT NULL, idx bigint NOT NULL, PRIMARY KEY (name, idx))"
      for table in INDEX_CHILDREN),
    *(f"CREATE INDEX access_index_{column} ON access_index ({column}, idx)"
      for column in ("time_hw", "client", "purpose", "case_ref", "outcome", "subject")),
    # the entries whose time lies below the high-water mark before them, by how far: MAX is one lookup
    "CREATE INDEX access_index_late ON access_index ((time_hw - time_us)) WHERE time_us < time_hw",
)

INDEX_GUARD = """CREATE FUNCTION access_index_guard() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND (SELECT entry FROM access_log WHERE idx = OLD.idx) IS NULL THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'the access log index follows the log: only pruning removes the rows of an entry';
    END $$"""

INDEX_TRIGGERS = tuple(
    f"CREATE TRIGGER {table}_guard BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW "
    "EXECUTE FUNCTION access_index_guard()" for table in ("access_index", *INDEX_CHILDREN))


HIGH_WATER = "SELECT time_hw FROM access_index ORDER BY idx DESC LIMIT 1"  # of the last entry indexed


async def write_index(conn: Conn, rows: Iterable[tuple[int, IndexFields]], high_water: int | None) -> None:
    """Insert the index rows of entries (in index order) after one whose high-water mark is ``high_water``.
    Runs inside the caller's transaction, under the log's lock."""
    main: list[list[object]] = [[] for _ in range(8)]  # by column: one statement per table and batch
    children: dict[str, tuple[list[str], list[int]]] = {table: ([], []) for table in INDEX_CHILDREN}
    for idx, f in rows:
        if f.time_us is not None and (high_water is None or f.time_us > high_water):
            high_water = f.time_us
        for column, value in zip(main, (idx, f.time_us, high_water, f.client, f.purpose, f.case_ref, f.outcome,
                                        f.subject), strict=True):
            column.append(value)
        for table, values in (("access_index_checks", f.checks), ("access_index_sources", f.sources),
                              ("access_index_persons", f.persons)):
            children[table][0].extend(values)
            children[table][1].extend([idx] * len(values))
    await conn.execute("INSERT INTO access_index (idx, time_us, time_hw, client, purpose, case_ref, outcome, subject) "
                       "SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::text[], %b::text[], "
                       "%b::text[], %b::text[], %b::text[])", main)
    for table, (names, indices) in children.items():
        if names:
            await conn.execute(f"INSERT INTO {table} (name, idx) SELECT * FROM unnest(%b::text[], %b::bigint[])",
                               (names, indices))


async def drop_pruned(conn: Conn, pruned: Sequence[tuple[int, bytes]]) -> None:
    """Delete the index rows of entries whose payload was just pruned (their former bytes given, so the rows of
    the check and source tables are found by their primary key). Runs inside the pruning transaction."""
    names: dict[str, tuple[list[str], list[int]]] = {table: ([], []) for table in INDEX_CHILDREN}
    for idx, entry in pruned:
        fields = index_fields(entry)
        for table, values in (("access_index_checks", fields.checks), ("access_index_sources", fields.sources),
                              ("access_index_persons", fields.persons)):
            names[table][0].extend(values)
            names[table][1].extend([idx] * len(values))
    for table, (keys, indices) in names.items():
        if keys:
            await conn.execute(f"DELETE FROM {table} WHERE (name, idx) IN "
                               "(SELECT * FROM unnest(%s::text[], %s::bigint[]))", (keys, indices))
    await conn.execute("DELETE FROM access_index WHERE idx = ANY(%s::bigint[])", ([idx for idx, _ in pruned],))


async def search(conn: Conn, query: LogQuery) -> LogPage:
    """The page of entries matching ``query``, newest first (see ``gateway.audit.query``)."""
    statement, args = search_statement(query, POSTGRES)
    rows: Sequence[tuple[int, bytes]] = await (await conn.execute(statement, args)).fetchall()
    page = rows[:query.limit]
    more = len(rows) > query.limit
    return LogPage([hit(idx, bytes(entry)) for idx, entry in page], page[-1][0] if more else None)
