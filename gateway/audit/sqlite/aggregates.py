"""The SQLite table of the hourly aggregates (``gateway.audit.aggregates``) and the reads over it.

::

    access_hourly(hour, client, purpose, outcome, source, entries, requests, refused, errors, lat_0 .. lat_11)
        PK (hour, client, purpose, outcome, source)        "" for a missing client, purpose or source

Written by the append transaction (``write_hourly``: the batch's deltas summed first, then one upsert per key),
built from the kept entries by the schema migration (``build_hourly``), read back by ``hourly`` and by
``audit verify`` (``hourly_stream``). ``busy_subjects`` answers the citizen flag's question from the search
index alone (no entry decoded).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from gateway.audit.aggregates import COUNTERS, KEY_COLUMNS, Counts, HourlyRow, Key, accumulate, entry_deltas

HOURLY_TABLE = f"""CREATE TABLE IF NOT EXISTS access_hourly (
        hour INTEGER NOT NULL, client TEXT NOT NULL, purpose TEXT NOT NULL, outcome TEXT NOT NULL,
        source TEXT NOT NULL, {", ".join(f"{c} INTEGER NOT NULL" for c in COUNTERS)},
        PRIMARY KEY (hour, client, purpose, outcome, source)
    ) WITHOUT ROWID"""
_COLUMNS = (*KEY_COLUMNS, *COUNTERS)
UPSERT = (f"INSERT INTO access_hourly ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
          f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET "
          + ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTERS))


def write_hourly(conn: sqlite3.Connection, deltas: Iterable[tuple[Key, Counts]]) -> None:
    """Add the deltas of a batch of entries (inside the append transaction)."""
    summed: dict[Key, Counts] = {}
    accumulate(summed, deltas)
    conn.executemany(UPSERT, [(*key, *counts) for key, counts in summed.items()])


def build_hourly(conn: sqlite3.Connection) -> int:
    """Fill ``access_hourly`` from the kept entries (a migration, inside its transaction); return the rows."""
    summed: dict[Key, Counts] = {}
    cursor = conn.execute("SELECT entry FROM access_log WHERE entry IS NOT NULL ORDER BY idx")
    while batch := cursor.fetchmany(4096):
        for (entry,) in batch:
            accumulate(summed, entry_deltas(entry))
    conn.executemany(UPSERT, [(*key, *counts) for key, counts in summed.items()])
    return len(summed)


def hourly_stream(conn: sqlite3.Connection) -> Iterator[tuple[Any, ...]]:
    """Every stored row, for ``AggregateCheck.verdict`` (a missing table reads as empty)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'access_hourly'").fetchone():
        yield from conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM access_hourly")


def hourly(conn: sqlite3.Connection, first_hour: int, end_hour: int, sources: bool) -> list[HourlyRow]:
    """The rows of hours ``first_hour`` .. ``end_hour - 1``: the requests' own rows, or (``sources``) the
    sources' rows."""
    rows: Sequence[tuple[Any, ...]] = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM access_hourly WHERE hour >= ? AND hour < ? AND "
        f"source {'<>' if sources else '='} ''", (first_hour, end_hour)).fetchall()
    return [HourlyRow.of((r[0], r[1], r[2], r[3], r[4]), list(r[5:])) for r in rows]


def busy_subjects(conn: sqlite3.Connection, since_us: int, until_us: int, min_clients: int,
                  clients: Sequence[str], limit: int) -> list[tuple[int, int, str, str, str]]:
    """(idx, time_us, client, purpose, subject) of the entries in ``[since_us, until_us)`` naming a subject that
    ``min_clients`` distinct clients among ``clients`` looked up for a purpose in that time, oldest first,
    at most ``limit`` subjects — from the search index only."""
    lo = conn.execute("SELECT idx FROM access_index WHERE time_hw >= ? ORDER BY time_hw LIMIT 1",
                      (since_us,)).fetchone()
    if lo is None:
        return []
    marks = ", ".join("?" * len(clients)) or "NULL"
    scope = (f"idx >= ? AND time_us >= ? AND time_us < ? AND subject IS NOT NULL AND purpose IS NOT NULL AND "
             f"client IN ({marks})")
    args = (lo[0], since_us, until_us, *clients)
    found = conn.execute(
        f"SELECT idx, time_us, client, purpose, subject FROM access_index WHERE {scope} AND subject IN ("
        f"SELECT subject FROM access_index WHERE {scope} GROUP BY subject HAVING COUNT(DISTINCT client) >= ? "
        f"ORDER BY subject LIMIT ?) ORDER BY idx", (*args, *args, min_clients, limit)).fetchall()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in found]
