"""Searching the access log: what officers and citizens may ask of it, as values every store answers.

A ``LogQuery`` filters on the fields an entry records (never on personal data: the subject filter is the
keyed-HMAC pseudonym the gateway computes from an identifier; the identifier itself is never stored or
logged). Results come newest first, a page at a time; ``cursor`` is the index to continue *below* (with
``oldest_first``, oldest first and *above*).
Every store implementation (SQLite, PostgreSQL) passes ``tests/audit/test_search_contract.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

MAX_PAGE = 200


def cursor_given(cursor: int, size: int) -> bool:
    """Whether ``cursor`` can be one a page of a log of ``size`` entries gave: the index that page stopped at, older
    entries below it — from 1 to ``size`` - 1 (the log only grows)."""
    return 0 < cursor < size


@dataclass(frozen=True)
class LogQuery:
    since: datetime | None = None  # inclusive, on the entry's `time`
    until: datetime | None = None  # exclusive
    client: str | None = None
    no_client: bool | None = None  # True: only entries without a client (the caller unknown: refused, or a login)
    purpose: str | None = None
    case_ref: str | None = None
    outcome: str | None = None
    check: str | None = None  # the entry's `checks` contains it
    source: str | None = None  # the entry's `sources` names it
    subject: str | None = None  # a pseudonym, as stored
    person: str | None = None  # a pseudonym among the entry's `co_subjects` (spouses, children read for a query)
    limit: int = 50
    cursor: int | None = None  # return entries with index < cursor (> cursor when oldest_first)
    oldest_first: bool = False  # ascending index order (the anomaly view lists a flag's first entries)

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        if self.no_client and self.client is not None:
            raise ValueError("an entry cannot both have a given client and no client")


@dataclass(frozen=True)
class LogHit:
    index: int
    entry: dict[str, Any]  # the canonical entry, decoded


@dataclass(frozen=True)
class LogPage:
    hits: list[LogHit] = field(default_factory=list)
    next_cursor: int | None = None  # None: no more results


class SearchableLog(Protocol):
    async def search(self, query: LogQuery) -> LogPage:
        """Entries matching every given filter, newest first; pruned entries are not returned."""
        ...
