"""Hourly aggregates of the access log: what each store keeps per clock hour, derived from the entries.

One row per (UTC hour, client, purpose, outcome, source), updated in the same transaction as the entries it
counts (so it cannot disagree with the log), rebuilt from the entries by a migration, and checked against them
by ``audit verify`` (``AggregateCheck``). Like the search index it is derived data outside the Merkle tree: no
signed head vouches for it, the export never reads it, and it holds no personal data (no subject, no path).

``source`` is ``""`` for the row of the requests themselves; a row with a source name counts the entries that
named that administration (``AccessRecord.sources``). Counters of a row:

* ``entries`` — log entries;
* ``requests`` — requests they stand for: an entry of aggregated anonymous refusals
  (``refusals_aggregated``, ``gateway.trust.refusals``) stands for ``detail.count`` requests, any other for one;
* ``refused`` — of those, refused with a 4xx (counted by ``detail.count`` likewise);
* ``errors`` — request rows: answered 5xx; source rows: the source's status was neither ``ok`` nor ``not_found``;
* ``latency`` — a histogram over ``BUCKETS_MS`` (upper bounds, the last one open): request rows the entry's
  ``latency_ms`` (aggregated refusals have none), source rows the source's call time when the entry records it
  (``detail.source_latency_ms``), so p50/p99 can be estimated (``quantile``).

Hours are numbered from the Unix epoch (``hour_of``): hour ``h`` holds the entries whose ``time`` lies in
``[h × 3600 s, (h + 1) × 3600 s)`` UTC. An entry whose time cannot be read is not aggregated.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import add
from typing import Any

import orjson

from gateway.audit.record import AccessRecord
from gateway.audit.search_index import micros
from gateway.audit.store import ChainBreak

BUCKETS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, float("inf"))
HISTOGRAM = tuple(f"lat_{i}" for i in range(len(BUCKETS_MS)))  # the histogram's columns
COUNTERS = ("entries", "requests", "refused", "errors", *HISTOGRAM)
KEY_COLUMNS = ("hour", "client", "purpose", "outcome", "source")
AGGREGATED = "refusals_aggregated"  # gateway.trust.refusals.AGGREGATED (not imported: audit never imports trust)
HOUR_US = 3_600_000_000
ANSWERED = ("ok", "not_found")  # a source's statuses that are not errors ("not found" is an answer)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Key = tuple[int, str, str, str, str]  # (hour, client, purpose, outcome, source); "" for none
Counts = list[int]  # in COUNTERS order


def hour_of(moment: datetime) -> int:
    """The number of the clock hour (UTC) holding ``moment``."""
    return micros(moment) // HOUR_US


def hour_start(hour: int) -> datetime:
    return EPOCH + timedelta(hours=hour)


def bucket_of(ms: float) -> int:
    """The histogram bucket of a latency: the first whose upper bound reaches it."""
    return bisect.bisect_left(BUCKETS_MS, max(ms, 0.0))


@dataclass(frozen=True)
class HourlyRow:
    """One row of the aggregates, as a store returns it."""

    hour: int
    client: str | None
    purpose: str | None
    outcome: str
    source: str | None  # None: the requests' own row
    entries: int
    requests: int
    refused: int
    errors: int
    latency: tuple[int, ...]  # per bucket of BUCKETS_MS

    @property
    def start(self) -> datetime:
        return hour_start(self.hour)

    @classmethod
    def of(cls, key: Key, counts: Counts) -> HourlyRow:
        hour, client, purpose, outcome, source = key
        return cls(hour, client or None, purpose or None, outcome, source or None, counts[0], counts[1],
                   counts[2], counts[3], tuple(counts[4:]))


def _deltas(time_us: int | None, client: Any, purpose: Any, outcome: Any, status: Any, latency_ms: Any,
            sources: Iterable[tuple[Any, Any]], detail: Any) -> Iterator[tuple[Key, Counts]]:
    if time_us is None:
        return
    hour = time_us // HOUR_US
    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    outcome_text = text(outcome)
    status_code = status if type(status) is int else 0
    weight = 1
    aggregated = outcome_text == AGGREGATED
    if aggregated and isinstance(detail, dict) and type(detail.get("count")) is int and detail["count"] > 0:
        weight = detail["count"]
    refused = weight if 400 <= status_code < 500 else 0
    base = (hour, text(client), text(purpose), outcome_text)
    counts = [1, weight, refused, 1 if status_code >= 500 else 0] + [0] * len(BUCKETS_MS)
    if not aggregated and isinstance(latency_ms, int | float) and not isinstance(latency_ms, bool):
        counts[4 + bucket_of(float(latency_ms))] = 1
    yield (*base, ""), counts
    timings = detail.get("source_latency_ms") if isinstance(detail, dict) else None
    seen: set[str] = set()
    for name, source_status in sources:
        if not isinstance(name, str) or not name or name in seen:
            continue
        seen.add(name)
        row = [1, weight, refused, 0 if source_status in ANSWERED else 1] + [0] * len(BUCKETS_MS)
        ms = timings.get(name) if isinstance(timings, dict) else None
        if isinstance(ms, int | float) and not isinstance(ms, bool):
            row[4 + bucket_of(float(ms))] = 1
        yield (*base, name), row


def record_deltas(record: AccessRecord) -> list[tuple[Key, Counts]]:
    """What appending ``record`` adds to the aggregates (from the record the bytes are made of: no parsing)."""
    try:
        time_us: int | None = micros(datetime.fromisoformat(record.time))
    except (TypeError, ValueError):
        time_us = None
    return list(_deltas(time_us, record.client, record.purpose, record.outcome, record.status, record.latency_ms,
                        record.sources, record.detail))


def entry_deltas(entry: bytes) -> list[tuple[Key, Counts]]:
    """The same from an entry's canonical bytes (a migration, a verification); both give the same, tested."""
    try:
        data = orjson.loads(entry)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    try:
        time_us: int | None = micros(datetime.fromisoformat(data["time"])) if isinstance(data.get("time"), str) \
            else None
    except ValueError:
        time_us = None
    raw_sources = data.get("sources")
    sources = [(s.get("name"), s.get("status")) for s in raw_sources if isinstance(s, dict)] \
        if isinstance(raw_sources, list) else []
    return list(_deltas(time_us, data.get("client"), data.get("purpose"), data.get("outcome"), data.get("status"),
                        data.get("latency_ms"), sources, data.get("detail")))


def accumulate(into: dict[Key, Counts], deltas: Iterable[tuple[Key, Counts]]) -> None:
    for key, counts in deltas:
        have = into.get(key)
        into[key] = list(counts) if have is None else list(map(add, have, counts))  # (map: C speed)


def quantile(histogram: Iterable[int], q: float) -> float | None:
    """An estimate of the ``q`` quantile (0 < q < 1) of a histogram over ``BUCKETS_MS``, in ms, interpolated
    linearly within its bucket (the open last bucket answers its lower bound); None when it is empty."""
    counts = list(histogram)
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            low = BUCKETS_MS[i - 1] if i else 0.0
            high = BUCKETS_MS[i]
            if high == float("inf"):
                return low
            return low + (high - low) * (rank - seen) / n
        seen += n
    return BUCKETS_MS[-2]


# --- checking the aggregates against the entries (``audit verify``) ------------------------------------------------


class AggregateCheck:
    """Recomputes the aggregates from the entries a verification streams and compares them with the stored rows.

    Only the hours after the first kept entry's hour are compared when a pruned prefix exists (the pruned entries'
    times are gone, their counts stay in the aggregates); a stored row of a later hour that no entry accounts for
    is a disagreement too. ``watch`` passes the rows through; ``verdict(stored)`` names the first entry of the
    first hour that disagrees."""

    def __init__(self) -> None:
        self._computed: dict[Key, Counts] = {}
        self._first: dict[int, int] = {}  # hour -> index of its first entry
        self._pruned = False
        self._floor: int | None = None  # hours up to this one are not compared (a pruned prefix reaches them)

    def watch(self, rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        for row in rows:
            index, entry = row[0], row[1]
            if entry is None:
                self._pruned = True
            elif isinstance(entry, bytes) and type(index) is int:
                deltas = entry_deltas(entry)
                if deltas:
                    hour = deltas[0][0][0]
                    if self._pruned and self._floor is None:
                        self._floor = hour
                    self._first.setdefault(hour, index)
                    accumulate(self._computed, deltas)
            yield row

    def verdict(self, stored: Iterable[tuple[Any, ...]]) -> ChainBreak | None:
        """``stored``: rows of (hour, client, purpose, outcome, source, *COUNTERS) as the store holds them."""
        floor = self._floor if self._floor is not None else (None if not self._pruned else 2**62)
        found: dict[Key, Counts] = {}
        for row in stored:
            key: Key = (int(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]))
            found[key] = [int(v) for v in row[5:]]
        bad_hours = sorted({k[0] for k in {*found, *self._computed}
                            if (floor is None or k[0] > floor) and found.get(k) != self._computed.get(k)})
        if not bad_hours:
            return None
        hour = bad_hours[0]
        index = self._first.get(hour, max(self._first.values(), default=0))
        return ChainBreak(index, f"the hourly aggregates of the hour starting {hour_start(hour).isoformat()} do not "
                                 "add up to its entries: the dashboard and the anomaly flags would read wrong counts")

