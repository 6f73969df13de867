"""One citizen's entries of the access log, newest first, a page at a time.

A citizen may have several pseudonyms in the log (of their IDCS, and of their CIN when a query named them
by CIN and the civil registry could not resolve it), and appears as the subject of entries or among their
co-subjects (a spouse's or parent's verification that read their data), so the page merges one search per
pseudonym and role, in index order, and keeps only the entries ``keep`` accepts (``view.classify``). The cursor
is the index to continue below, as for every search (``gateway/audit/query.py``).

The walk is bounded: after ``max_batches`` batches (of up to ``query.MAX_PAGE`` entries per pseudonym) it stops
and returns what it found with a cursor to go on — so a page may hold fewer entries than asked for, even
none, and the caller goes on while ``next_cursor`` is not ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.audit.query import MAX_PAGE, LogHit, LogQuery, SearchableLog

MAX_BATCHES = 8


@dataclass(frozen=True)
class CitizenPage:
    hits: list[LogHit] = field(default_factory=list)
    next_cursor: int | None = None


async def collect(log: SearchableLog, subjects: Sequence[str], keep: Callable[[LogHit], bool], limit: int,
                  cursor: int | None = None, max_batches: int = MAX_BATCHES,
                  persons: Sequence[str] = ()) -> CitizenPage:
    """Up to ``limit`` kept entries about ``subjects`` (as the subject) or ``persons`` (as a co-subject) below
    ``cursor``, newest first, and where to go on."""
    found: list[LogHit] = []
    batch = min(MAX_PAGE, 2 * limit + 10)  # room for entries not shown (the citizen's own reads, mostly)
    for _ in range(max_batches):
        pages = [await log.search(LogQuery(subject=s, limit=batch, cursor=cursor)) for s in subjects]
        pages += [await log.search(LogQuery(person=p, limit=batch, cursor=cursor)) for p in persons]
        # Every stream still holding entries has given all of them at or above its cursor; below the highest
        # such cursor another stream may still hold some, so this batch is complete only down to it.
        floor = max((p.next_cursor for p in pages if p.next_cursor is not None), default=None)
        merged = sorted({h.index: h for p in pages for h in p.hits}.values(), key=lambda h: h.index, reverse=True)
        complete = [h for h in merged if floor is None or h.index >= floor]
        for position, hit in enumerate(complete):
            if not keep(hit):
                continue
            found.append(hit)
            if len(found) == limit:
                more = floor is not None or position < len(complete) - 1
                return CitizenPage(found, hit.index if more else None)
        if floor is None:
            return CitizenPage(found, None)
        cursor = floor
    return CitizenPage(found, cursor)
