"""Checking the search index against the entries it describes: part of the full verification, for every store.

The search index (``gateway.audit.search_index``) is not part of the tree, so no signed head vouches for it;
but each of its rows derives from an entry's bytes, which the tree does vouch for. ``IndexCheck`` reads the
index tables in entry order beside the entries ``recompute`` streams (the same pass, the same snapshot: each
entry's index rows are compared when ``recompute`` takes the entry) and finds the first entry whose index rows
are not exactly what ``index_fields`` derives from its bytes:

* a kept entry without its index row (no search would find it), or with another time, client, purpose, case
  reference, outcome or subject, another set of checks, of sources or of co-subjects;
* a time high-water mark that does not follow from the entries' times (a time window would start or stop at
  the wrong entry);
  after a pruned prefix the mark also carries the pruned entries' times, which are gone: there it can only
  be checked to reach the entry's own time, which is what keeps searches complete;
* index rows of a pruned entry (retention removes them with the payload), or of an entry the log does not hold.

Reasons name the entry and the field, never a value (the officers' screens show them). When the tree is broken
too, ``IndexCheck.verdict`` reports the lower index; at the same index the tree's reason, which also explains
the index (an altered, moved or deleted entry no longer matches its index rows either).

The store hands the index over as four streams ordered by entry index: ``access_index`` rows, and for the
checks, the sources and the co-subjects one row per entry, ``(idx, names)``, the names as a list (``None`` for a
name that is not text).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

from gateway.audit.recompute import Row
from gateway.audit.search_index import index_fields
from gateway.audit.store import ChainBreak

IndexRow = tuple[Any, ...]  # (idx, time_us, time_hw, client, purpose, case_ref, outcome, subject), as stored
NamesRow = tuple[Any, Any]  # (idx, [name, ...]): the checks (or sources) of one entry, as stored

FIELDS = ("time", "client", "purpose", "case reference", "outcome", "subject")  # access_index columns 1, 3..7


@dataclass(frozen=True)
class IndexStreams:
    """The search index of one snapshot, each stream in entry index order."""

    rows: Iterable[IndexRow]
    checks: Iterable[NamesRow]
    sources: Iterable[NamesRow]
    persons: Iterable[NamesRow] = ()  # the co-subjects (an index without their table reads as none)


def _is_index(value: object) -> TypeGuard[int]:
    return type(value) is int


class _Stream:
    """Rows keyed by entry index, taken one entry at a time."""

    def __init__(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._rows = iter(rows)
        self.head: tuple[Any, ...] | None = next(self._rows, None)

    def take(self, index: int) -> tuple[tuple[Any, ...] | None, bool]:
        """The row of entry ``index`` if it is next, and whether every row up to entry ``index`` is taken."""
        row = self.head
        if row is None:
            return None, True
        if row[0] == index and _is_index(row[0]):
            self.head = head = next(self._rows, None)
            return row, head is None or (_is_index(head[0]) and head[0] > index)
        return None, _is_index(row[0]) and row[0] > index

    def stray(self, below: int, here: int, last: int) -> ChainBreak | None:
        """Why the next row belongs to no entry, if it lies below ``below``; ``here``: where the walk is,
        ``last``: the last entry walked (whose row was taken)."""
        if self.head is None:
            return None
        position = self.head[0]
        if not _is_index(position):
            return ChainBreak(here, "the search index holds a row whose entry index is not an integer: it "
                                    "describes no entry of the log")
        if position >= below:
            return None
        if position == last:
            return ChainBreak(position, f"the search index holds more than one row for entry {position}")
        return ChainBreak(position, f"the search index describes entry {position}, which the log does not hold "
                                    "(an entry removed from the log, or index rows made up)")


class IndexCheck:
    """The first entry whose search index rows are not what its bytes give (see the module docstring); one per
    verification: ``recompute(check.watch(rows), ...)``, then ``check.verdict(`` its result ``)``."""

    def __init__(self, streams: IndexStreams) -> None:
        self._streams = tuple(_Stream(s) for s in (streams.rows, streams.checks, streams.sources, streams.persons))
        self._high_water: int | None = None  # the time high-water mark after the last kept entry
        self._exact = True  # False right after pruned entries, whose times are gone
        self._walked = 0  # entries walked
        self.found: ChainBreak | None = None

    def watch(self, rows: Iterable[Row]) -> Iterator[Row]:
        """``rows`` unchanged, each entry's index rows checked as it is taken (until the first break)."""
        for row in rows:
            index = row[0]
            if self.found is None and _is_index(index):
                self.found = self._entry(index, row[1])
                self._walked = index + 1
            yield row

    def verdict(self, tree: ChainBreak | None) -> ChainBreak | None:
        """What verification reports: the lower index of the tree's break and the index's; the tree's at a tie.
        Without a tree break, index rows beyond the last entry are looked for too."""
        found = self.found
        if found is None and tree is None:
            found = self._stray(2**63, self._walked, self._walked - 1)
        if found is None or (tree is not None and tree.index <= found.index):
            return tree
        return found

    def _stray(self, below: int, here: int, last: int) -> ChainBreak | None:
        strays = [b for b in (s.stray(below, here, last) for s in self._streams) if b is not None]
        return min(strays, key=lambda b: b.index) if strays else None

    def _entry(self, index: int, entry: object) -> ChainBreak | None:
        main, checks, sources, persons = self._streams
        (row, past_main), (checked, past_checks), (sourced, past_sources), (personed, past_persons) = (
            main.take(index), checks.take(index), sources.take(index), persons.take(index))
        if not (past_main and past_checks and past_sources and past_persons):
            return self._stray(index + 1, index, index)
        if entry is None:
            self._exact = False
            if row is not None or checked is not None or sourced is not None or personed is not None:
                return ChainBreak(index, f"the search index still holds pruned entry {index}: retention removed "
                                         "the entry's payload, not what the index says of it")
            return None
        if not isinstance(entry, bytes):
            return None  # recompute names it: a column's type changed
        if row is None:
            return ChainBreak(index, f"the search index misses entry {index}: officers' searches would not find it")
        fields = index_fields(entry)
        expected = (fields.time_us, fields.client, fields.purpose, fields.case_ref, fields.outcome, fields.subject)
        stored = (row[1], row[3], row[4], row[5], row[6], row[7])
        if stored != expected:
            what = next(name for name, a, b in zip(FIELDS, stored, expected, strict=True) if a != b)
            return ChainBreak(index, f"the search index gives entry {index} another {what} than the entry has: "
                                     f"searches by {what} would not find it where they should")
        if not self._follows(row[2], fields.time_us):
            return ChainBreak(index, f"the search index's time high-water mark at entry {index} does not follow "
                                     "from the entries' times: searches by time could stop before entries they "
                                     "should find")
        for kind, names, wanted in (("check", checked, fields.checks), ("source", sourced, fields.sources),
                                    ("co-subject", personed, fields.persons)):
            have = set(names[1]) if names is not None and isinstance(names[1], list) else set()
            if have != set(wanted):
                if not have.issuperset(wanted):
                    return ChainBreak(index, f"the search index misses a {kind} of entry {index}: searches by "
                                             f"that {kind} would not find it")
                return ChainBreak(index, f"the search index gives entry {index} a {kind} the entry does not name: "
                                         f"searches by that {kind} would wrongly find it")
        return None

    def _follows(self, mark: object, time_us: int | None) -> bool:
        """Whether ``mark`` is the high-water mark after an entry of time ``time_us``; remembers it if so."""
        if self._exact:
            expected = self._high_water
            if time_us is not None and (expected is None or time_us > expected):
                expected = time_us
            good = mark == expected and (mark is None or _is_index(mark))
        else:  # the first kept entry after pruned ones: their times are gone, the mark must reach this one's
            good = (mark is None and time_us is None) or (_is_index(mark) and (time_us is None or mark >= time_us))
        if good:
            self._high_water = mark if _is_index(mark) else None
            self._exact = True
        return good
