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

from gateway.audit.query import LogHit
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
    checks, sources = data.get("checks"), data.get("sources")
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
    )


def record_fields(record: AccessRecord) -> IndexFields:
    """``index_fields(record.canonical())`` without parsing the bytes back (appending runs this per entry)."""
    return IndexFields(
        time_us=_time(record.time), client=_text(record.client), purpose=_text(record.purpose),
        case_ref=_text(record.case_ref), outcome=_text(record.outcome), subject=_text(record.subject),
        checks=tuple(dict.fromkeys(c for c in record.checks if isinstance(c, str))),
        sources=tuple(dict.fromkeys(name for name, _ in record.sources if isinstance(name, str))),
    )


def hit(index: int, entry: bytes) -> LogHit:
    """A search result: the entry's own bytes, decoded."""
    decoded = orjson.loads(entry)
    return LogHit(index, decoded if isinstance(decoded, dict) else {"entry": decoded})
