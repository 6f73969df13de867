"""The PostgreSQL table of the hourly aggregates (``gateway.audit.aggregates``) and the reads over it: the same
layout and semantics as the SQLite one (``gateway.audit.sqlite.aggregates``).

Written in the append transaction, under the log's advisory lock (``write_hourly``: the batch's deltas summed,
then one ``INSERT … SELECT FROM unnest … ON CONFLICT DO UPDATE``), built from the kept entries by the schema step
``migrate_hourly``, read by ``hourly`` and ``busy_subjects`` (short statements on the pool), and checked by
``audit verify`` (``HOURLY_ROWS``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from gateway.audit.aggregates import COUNTERS, KEY_COLUMNS, Counts, HourlyRow, Key, accumulate, entry_deltas

Conn = psycopg.AsyncConnection[Any]
HOURLY_TABLE = f"""CREATE TABLE access_hourly (
        hour bigint NOT NULL, client text NOT NULL, purpose text NOT NULL, outcome text NOT NULL,
        source text NOT NULL, {", ".join(f"{c} bigint NOT NULL" for c in COUNTERS)},
        PRIMARY KEY (hour, client, purpose, outcome, source)
    )"""
_COLUMNS = (*KEY_COLUMNS, *COUNTERS)
_TYPES = ("bigint", "text", "text", "text", "text", *("bigint" for _ in COUNTERS))
UPSERT = (f"INSERT INTO access_hourly ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
          + ", ".join(f"%s::{t}[]" for t in _TYPES) + f") ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET "
          + ", ".join(f"{c} = access_hourly.{c} + excluded.{c}" for c in COUNTERS))
HOURLY_ROWS = f"SELECT {', '.join(_COLUMNS)} FROM access_hourly"


def _columns(summed: dict[Key, Counts]) -> list[list[Any]]:
    rows = [(*key, *counts) for key, counts in sorted(summed.items())]  # one key order: no deadlock between writers
    return [[row[i] for row in rows] for i in range(len(_COLUMNS))]


async def write_hourly(conn: Conn, deltas: Iterable[tuple[Key, Counts]]) -> None:
    summed: dict[Key, Counts] = {}
    accumulate(summed, deltas)
    if summed:
        await conn.execute(UPSERT, _columns(summed))


async def migrate_hourly(conn: Conn) -> None:
    """The schema step that adds the aggregates: the table, filled from the kept entries (the caller sets the
    version, inside its DDL lock and transaction). Derived data: a table left from before is built anew."""
    await conn.execute("DROP TABLE IF EXISTS access_hourly")
    await conn.execute(HOURLY_TABLE)
    summed: dict[Key, Counts] = {}
    async with conn.cursor(name="build_hourly") as cursor:
        await cursor.execute("SELECT entry FROM access_log WHERE entry IS NOT NULL ORDER BY idx")
        while batch := await cursor.fetchmany(4096):
            for (entry,) in batch:
                accumulate(summed, entry_deltas(bytes(entry)))
    if summed:
        await conn.execute(UPSERT, _columns(summed))


async def hourly(conn: Conn, first_hour: int, end_hour: int, sources: bool) -> list[HourlyRow]:
    rows = await (await conn.execute(
        f"{HOURLY_ROWS} WHERE hour >= %s AND hour < %s AND source {'<>' if sources else '='} ''",
        (first_hour, end_hour))).fetchall()
    return [HourlyRow.of((int(r[0]), r[1], r[2], r[3], r[4]), [int(v) for v in r[5:]]) for r in rows]


async def busy_subjects(conn: Conn, since_us: int, until_us: int, min_clients: int, clients: Sequence[str],
                        limit: int) -> list[tuple[int, int, str, str, str]]:
    """As ``gateway.audit.sqlite.aggregates.busy_subjects``: from the search index only."""
    lo = await (await conn.execute("SELECT idx FROM access_index WHERE time_hw >= %s ORDER BY time_hw, idx LIMIT 1",
                                   (since_us,))).fetchone()
    if lo is None:
        return []
    scope = ("idx >= %s AND time_us >= %s AND time_us < %s AND subject IS NOT NULL AND purpose IS NOT NULL AND "
             "client = ANY(%s::text[])")
    args = (lo[0], since_us, until_us, list(clients))
    rows = await (await conn.execute(
        f"SELECT idx, time_us, client, purpose, subject FROM access_index WHERE {scope} AND subject IN ("
        f"SELECT subject FROM access_index WHERE {scope} GROUP BY subject HAVING COUNT(DISTINCT client) >= %s "
        f"ORDER BY subject LIMIT %s) ORDER BY idx", (*args, *args, min_clients, limit))).fetchall()
    return [(int(r[0]), int(r[1]), r[2], r[3], r[4]) for r in rows]
