"""What a store indexes of an access-log entry so ``LogQuery`` filters run on indexes, for every store.

The search index is derived data, beside the tree and never part of it: export reads the entries only.
Its fields are read from the entry's canonical bytes (the bytes the log commits to), so the index says what
the entry says — which verification checks, entry by entry (``gateway.audit.index_check``); a search always
returns the decoded entry bytes, never index values.

Appending takes the fields from the ``AccessRecord`` the bytes are made of (``record_fields``), a migration
from the bytes (``index_fields``); both give the same fields, tested.

Times are kept as integer microseconds since the Unix epoch (UTC), so comparisons never depend on how a time
was written. ``time_hw`` is the high-water mark of the times of entries ``0 .. idx`` — non-decreasing along
the log, so the first index that can match ``since`` is one index lookup away, even though concurrent
requests append slightly out of time order (``lower_bound``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway.audit.query import LogHit, LogQuery
from gateway.audit.record import AccessRecord

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class IndexFields:
    """The searchable fields of one entry (``None`` when the entry does not carry them)."""

    time_us: int | None
    client: str | None
    purpose: str | None
    case_ref: str | None
    outcome: str | None
    subject: str | None
    checks: tuple[str, ...]
    sources: tuple[str, ...]
    persons: tuple[str, ...] = ()  # the co-subjects' pseudonyms (``co_subjects``)


MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive time is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // MICROSECOND  # exact: a timedelta counts whole microseconds


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return micros(datetime.fromisoformat(value))
    except ValueError:
        return None


def index_fields(entry: bytes) -> IndexFields:
    """The fields of an entry's canonical bytes; a member of the wrong type is simply not indexed."""
    try:
        data = orjson.loads(entry)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return IndexFields(None, None, None, None, None, None, (), ())
    checks, sources, persons = data.get("checks"), data.get("sources"), data.get("co_subjects")
    names = [s.get("name") for s in sources if isinstance(s, dict)] if isinstance(sources, list) else []
    return IndexFields(
        time_us=_time(data.get("time")),
        client=_text(data.get("client")),
        purpose=_text(data.get("purpose")),
        case_ref=_text(data.get("case_ref")),
        outcome=_text(data.get("outcome")),
        subject=_text(data.get("subject")),
        checks=tuple(dict.fromkeys(c for c in checks if isinstance(c, str))) if isinstance(checks, list) else (),
        sources=tuple(dict.fromkeys(n for n in names if isinstance(n, str))),
        persons=tuple(dict.fromkeys(p for p in persons if isinstance(p, str))) if isinstance(persons, list) else (),
    )


def record_fields(record: AccessRecord) -> IndexFields:
    """``index_fields(record.canonical())`` without parsing the bytes back (appending runs this per entry)."""
    return IndexFields(
        time_us=_time(record.time), client=_text(record.client), purpose=_text(record.purpose),
        case_ref=_text(record.case_ref), outcome=_text(record.outcome), subject=_text(record.subject),
        checks=tuple(dict.fromkeys(c for c in record.checks if isinstance(c, str))),
        sources=tuple(dict.fromkeys(name for name, _ in record.sources if isinstance(name, str))),
        persons=tuple(dict.fromkeys(p for p in record.co_subjects if isinstance(p, str))),
    )


def hit(index: int, entry: bytes) -> LogHit:
    """A search result: the entry's own bytes, decoded."""
    decoded = orjson.loads(entry)
    return LogHit(index, decoded if isinstance(decoded, dict) else {"entry": decoded})


# --- the search statement, shared by the stores ---------------------------------------------------------------------

BIG = 2**63 - 1
CHILD_FILTERS = (("check", "access_index_checks"), ("source", "access_index_sources"),
                 ("person", "access_index_persons"))
ENTRY_FILTERS = ("client", "purpose", "case_ref", "outcome", "subject")
MAX_LATENESS = "SELECT COALESCE(MAX(time_hw - time_us), 0) FROM access_index WHERE time_us < time_hw"


@dataclass(frozen=True)
class SqlDialect:
    """What differs between the stores' SQL: the parameter marker, the join that fixes the scan order
    (SQLite's ``CROSS JOIN`` keeps the driving table outermost) and the order of the time lookup."""

    param: str
    join: str
    time_order: str


SQLITE = SqlDialect("?", "CROSS JOIN", "time_hw")
POSTGRES = SqlDialect("%s", "JOIN", "time_hw, idx")


def search_statement(query: LogQuery, dialect: SqlDialect) -> tuple[str, list[object]]:
    """The one statement answering ``query``: a page and one more row, to know whether there is more.

    It is driven by one backward index range scan over the entry index: ``access_index`` itself (or one of its
    column indexes for an equality filter) — or, when the only equality filters are a check or a source, that
    table's key (name, idx). Every other filter is checked along the way. The time bounds become index bounds:
    entries below the first whose high-water mark reaches ``since`` are all older; entries from the first whose
    high-water mark reaches ``until`` plus the largest lateness in the log (how far an entry's time lies below
    the high-water mark before it) are all newer. Both are exact, so the scan stays inside the window however
    old it is."""
    p = dialect.param
    first_reaching = f"SELECT idx FROM access_index WHERE time_hw >= {{}} ORDER BY {dialect.time_order} LIMIT 1"
    children = [(getattr(query, name), table) for name, table in CHILD_FILTERS if getattr(query, name) is not None]
    entry_filters = [(column, getattr(query, column)) for column in ENTRY_FILTERS if getattr(query, column) is not None]
    where: list[str] = []
    args: list[object] = []
    if children and not entry_filters:  # drive from the check (or source) table: (name, idx) is its key
        (name, table), children = children[0], children[1:]
        tables, driver = f"{table} d {dialect.join} access_index i ON i.idx = d.idx", "d"
        where.append(f"d.name = {p}")
        args.append(name)
    else:
        tables, driver = "access_index i", "i"
    for column, value in entry_filters:
        where.append(f"i.{column} = {p}")
        args.append(value)
    if query.no_client:  # the client column's index holds its NULLs too, in index order
        where.append("i.client IS NULL")
    for name, table in children:
        where.append(f"EXISTS (SELECT 1 FROM {table} x WHERE x.name = {p} AND x.idx = i.idx)")
        args.append(name)
    if query.since is not None:
        where += [f"i.time_us >= {p}", f"{driver}.idx >= ({first_reaching.format(p)})"]
        args += [micros(query.since)] * 2
    if query.until is not None:
        until = micros(query.until)
        newer = first_reaching.format(f"{p} + ({MAX_LATENESS})")
        where += [f"i.time_us < {p}", f"{driver}.idx < COALESCE(({newer}), {p})"]
        args += [until, until, BIG]
    if query.cursor is not None:
        where.append(f"{driver}.idx {'>' if query.oldest_first else '<'} {p}")
        args.append(query.cursor)
    where.append("a.entry IS NOT NULL")
    statement = (f"SELECT {driver}.idx, a.entry FROM {tables} {dialect.join} access_log a ON a.idx = {driver}.idx "
                 f"WHERE {' AND '.join(where)} ORDER BY {driver}.idx {'ASC' if query.oldest_first else 'DESC'} "
                 f"LIMIT {p}")
    return statement, [*args, query.limit + 1]
