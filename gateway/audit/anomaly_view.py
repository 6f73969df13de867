"""The anomaly flags from the hourly aggregates: the officers' view, fast whatever the size of the log.

``view`` gives the flags of ``gateway.audit.anomalies`` (the same kinds, thresholds and explanations) without
reading the window's entries one by one:

* **volume**, **outside_hours**, **rare_purpose** — counted from the hourly rows of the window and the
  baseline (``AccessLog.hourly``: one short statement). Outside working hours is decided per clock hour: an hour
  wholly outside counts whole; an hour the schedule cuts (``working_hours`` not on the hour in ``timezone``) is read
  entry by entry. Each flag then lists its first ``MAX_LISTED`` entries and its last one, two index lookups;
* **refusal_burst**, **anonymous_refusals** — the hourly rows name the clock hours where a burst is possible at
  all (enough refusals within ``⌈minutes / 60⌉ + 1`` consecutive hours); only the refused entries of those hours
  are read (by client and outcome, or without a client), each stream within its budget, and the detectors of
  ``gateway.audit.anomalies`` run over them. A burst needs enough refusals in a stretch of ``minutes``, so every
  stretch that qualifies lies inside such hours, and the flags are exactly those of the full scan;
* **citizen_many_clients** — the search index says which subjects were looked up by enough distinct clients
  in the window (``AccessLog.busy_subjects``), and only their entries are read.

The window is the last ``window_hours``, its start rounded down to the clock hour (UTC): the hourly rows cannot
cut an hour. Entries in the hour of ``now`` but after it count too. Clients are the configured ones, as for
the full scan (``gateway.api.anomalies.scan``, kept as the reference the tests compare with); the citizens count
only for bursts of refusals. Aggregated anonymous refusals count by their ``count``.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from gateway.audit.aggregates import hour_of, hour_start
from gateway.audit.anomalies import (
    MAX_LISTED,
    SEVERITY_RANK,
    Flag,
    Kind,
    Row,
    Severity,
    Window,
    citizen_many_clients,
    outside_words,
    rare_words,
    refusal_bursts,
    rows_of,
    volume_words,
    working,
)
from gateway.audit.anomalies import anonymous_refusals as anonymous_flags
from gateway.audit.query import MAX_PAGE, LogQuery
from gateway.audit.record import CITIZEN_ACTOR
from gateway.audit.store import AccessLog
from gateway.config.settings import AnomalySettings

MAX_DETAIL = 20_000  # refused entries read per client (candidate hours only)
MAX_UNATTRIBUTED = 50_000  # refused entries without a client read
MAX_SUBJECTS = 500  # citizens looked up by many clients whose entries are read
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class View:
    """What ``view`` found: the flags, the entries it read, and which streams ran out of budget."""

    flags: list[Flag]
    scanned: int  # entries read one by one (hourly rows are not counted)
    hourly_rows: int
    now: datetime
    window_start: datetime
    truncated: tuple[str, ...] = ()  # clients whose refused entries were more than the budget
    unattributed_truncated: bool = False
    budget: int = MAX_DETAIL
    unattributed_budget: int = MAX_UNATTRIBUTED

    @property
    def complete(self) -> bool:
        return not self.truncated and not self.unattributed_truncated


class _Reader:
    """Reads entries through the store's search, counting them against per-stream budgets."""

    def __init__(self, log: AccessLog) -> None:
        self.log = log
        self.scanned = 0

    async def rows(self, base: LogQuery, budget: int) -> tuple[list[Row], bool]:
        """Rows of the entries matching ``base``, newest first, up to ``budget`` (whole pages); and whether
        every matching entry was read."""
        found: list[Row] = []
        cursor: int | None = None
        while True:
            page = await self.log.search(replace(base, limit=MAX_PAGE, cursor=cursor))
            found += rows_of(page.hits)
            self.scanned += len(page.hits)
            cursor = page.next_cursor
            if cursor is None or len(found) >= budget:
                return found, cursor is None

    async def ends(self, base: LogQuery) -> tuple[list[Row], Row | None]:
        """The first ``MAX_LISTED`` rows matching ``base`` (oldest first) and the last one."""
        first = await self.log.search(replace(base, limit=MAX_LISTED, oldest_first=True))
        last = await self.log.search(replace(base, limit=1))
        self.scanned += len(first.hits) + len(last.hits)
        last_rows = rows_of(last.hits)
        return rows_of(first.hits), last_rows[0] if last_rows else None


def _listed(kind: Kind, severity: Severity, first: Sequence[Row], last: Row | None, count: int, clients: list[str],
            fr: str, en: str, purpose: str | None = None) -> Flag | None:
    if not first:
        return None  # the entries are gone (pruned) since the hour was counted
    end = last.time if last is not None else first[-1].time
    return Flag(kind, severity, tuple(clients), tuple(r.index for r in first[:MAX_LISTED]), count, first[0].time,
                end, fr, en, purpose=purpose)


def _candidate_runs(per_hour: dict[int, int], threshold: int, minutes: float) -> list[tuple[int, int]]:
    """Maximal runs of clock hours ``[first, end)`` inside which a stretch of ``minutes`` can hold ``threshold``
    refusals: every group of ``⌈minutes / 60⌉ + 1`` consecutive hours holding that many in all."""
    width = math.ceil(minutes / 60) + 1
    hours: set[int] = set()
    for h in per_hour:
        for start in range(h - width + 1, h + 1):
            group = range(start, start + width)
            if sum(per_hour.get(g, 0) for g in group) >= threshold:
                hours.update(g for g in group if per_hour.get(g, 0))
    runs: list[tuple[int, int]] = []
    for h in sorted(hours):
        if runs and runs[-1][1] == h:
            runs[-1] = (runs[-1][0], h + 1)
        else:
            runs.append((h, h + 1))
    return runs


def _hour_kinds(first: int, last: int, s: AnomalySettings) -> dict[int, str]:
    """For each clock hour: ``"in"`` (wholly within working hours), ``"out"`` (wholly outside) or ``"cut"``."""
    kinds = {}
    for h in range(first, last + 1):
        start = hour_start(h)
        inside = {working(start + timedelta(minutes=m), s) for m in range(60)}  # the schedule has minute steps
        kinds[h] = "cut" if len(inside) == 2 else ("in" if inside == {True} else "out")
    return kinds


async def view(log: AccessLog, settings: AnomalySettings, clients: Iterable[str], now: datetime | None = None,
               max_detail: int = MAX_DETAIL, max_unattributed: int = MAX_UNATTRIBUTED) -> View:
    """The flags of the window ending at ``now`` (see the module docstring)."""
    s = settings
    now = now or datetime.now(UTC)
    window_hour = hour_of(now - timedelta(hours=s.window_hours))
    window_start = hour_start(window_hour)
    baseline_start = window_start - timedelta(days=s.baseline_days)
    end = now + MICROSECOND
    configured = set(clients)
    agencies = sorted(configured - {CITIZEN_ACTOR})
    hourly = await log.hourly(baseline_start, end)
    reader = _Reader(log)
    # counts per (client, hour), per (client, purpose) in the window and the baseline, refusals per (client, hour)
    recent: dict[str, Counter[int]] = defaultdict(Counter)
    past: dict[str, Counter[int]] = defaultdict(Counter)
    purposes_now: dict[str, Counter[str]] = defaultdict(Counter)
    purposes_past: dict[str, Counter[str]] = defaultdict(Counter)
    refused: dict[str | None, Counter[int]] = defaultdict(Counter)
    refused_outcomes: dict[str, set[str]] = defaultdict(set)
    for row in hourly:
        if row.client is not None and row.client not in configured and row.client != CITIZEN_ACTOR:
            continue
        if row.hour >= window_hour:
            if row.refused:
                refused[row.client][row.hour] += row.refused
                if row.client is not None:
                    refused_outcomes[row.client].add(row.outcome)
            if row.client is None or row.client == CITIZEN_ACTOR:
                continue
            recent[row.client][row.hour] += row.entries
            if row.purpose:
                purposes_now[row.client][row.purpose] += row.entries
        elif row.client is not None and row.client != CITIZEN_ACTOR:
            past[row.client][row.hour] += row.entries
            if row.purpose:
                purposes_past[row.client][row.purpose] += row.entries
    flags: list[Flag] = []
    for client in agencies:
        flags += await _volume(reader, client, recent.get(client, Counter()), past.get(client, Counter()), s,
                               window_start, end)
        flags += await _rare(reader, client, purposes_now.get(client, Counter()),
                             purposes_past.get(client, Counter()), s, window_start, end)
    kinds = _hour_kinds(window_hour, hour_of(now), s)
    for client in agencies:
        flag = await _outside(reader, client, recent.get(client, Counter()), kinds, s, end)
        if flag is not None:
            flags.append(flag)
    detail: list[Row] = []
    truncated: list[str] = []
    for client in sorted((configured | {CITIZEN_ACTOR}) & {c for c in refused if c is not None}):
        budget, whole = max_detail, True
        for first, stop in _candidate_runs(refused[client], s.refusal_burst, s.refusal_burst_minutes):
            for outcome in sorted(refused_outcomes[client]):
                found, all_read = await reader.rows(LogQuery(client=client, outcome=outcome, since=hour_start(first),
                                                             until=min(hour_start(stop), end)), budget)
                detail += [r for r in found if r.refused]
                budget -= len(found)
                whole = whole and all_read
                if budget <= 0:
                    break
            if budget <= 0:
                break
        if not whole or budget <= 0:
            truncated.append(client)
    unattributed: list[Row] = []
    unattributed_whole, budget = True, max_unattributed
    for first, stop in reversed(_candidate_runs(refused.get(None, Counter()), s.anonymous_refusals,
                                                s.anonymous_refusals_minutes)):  # the newest first, like the scan
        found, all_read = await reader.rows(LogQuery(no_client=True, since=hour_start(first),
                                                     until=min(hour_start(stop), end)), budget)
        unattributed += [r for r in found if r.refused]
        budget -= len(found)
        unattributed_whole = unattributed_whole and all_read
        if budget <= 0:
            unattributed_whole = False
            break
    people = await log.busy_subjects(window_start, end, s.citizen_clients, agencies, MAX_SUBJECTS)
    looked_up = [Row(idx, datetime.fromtimestamp(us / 1_000_000, UTC), client, purpose, subject, 0, "")
                 for idx, us, client, purpose, subject in people]
    reader.scanned += len(looked_up)
    read = sorted((r for r in (*detail, *unattributed) if window_start <= r.time <= now),
                  key=lambda r: (r.time, r.index))
    window = Window(window_start, now, tuple(read), ())
    flags += await asyncio.to_thread(_detail_flags, window, looked_up, now, window_start, s)
    flags.sort(key=lambda f: f.start, reverse=True)
    flags.sort(key=lambda f: SEVERITY_RANK[f.severity])
    return View(flags, reader.scanned, len(hourly), now, window_start, tuple(truncated), not unattributed_whole,
                max_detail, max_unattributed)


def _detail_flags(window: Window, looked_up: list[Row], now: datetime, start: datetime,
                  s: AnomalySettings) -> list[Flag]:
    citizens = Window(start, now, tuple(sorted(looked_up, key=lambda r: (r.time, r.index))), ())
    return [*refusal_bursts(window, s), *anonymous_flags(window, s), *citizen_many_clients(citizens, s)]


async def _volume(reader: _Reader, client: str, recent: Counter[int], past: Counter[int], s: AnomalySettings,
                  window_start: datetime, end: datetime) -> list[Flag]:
    active = [n for n in past.values() if n]
    usual = statistics.median(active) if active else 0
    threshold = max(s.volume_min_requests, s.volume_factor * max(usual, 1))
    busy = sorted(h for h, n in recent.items() if n >= threshold)
    runs: list[list[int]] = []
    for h in busy:
        if runs and runs[-1][-1] == h - 1:
            runs[-1].append(h)
        else:
            runs.append([h])
    flags = []
    for run in runs:
        count = sum(recent[h] for h in run)
        severity, fr, en = volume_words(client, count, max(recent[h] for h in run), usual, hour_start(run[0]),
                                        hour_start(run[-1]), s)
        first, last = await reader.ends(LogQuery(client=client, since=max(hour_start(run[0]), window_start),
                                                 until=min(hour_start(run[-1] + 1), end)))
        flag = _listed(Kind.VOLUME, severity, first, last, count, [client], fr, en)
        if flag is not None:
            flags.append(flag)
    return flags


async def _rare(reader: _Reader, client: str, now_counts: Counter[str], past: Counter[str], s: AnomalySettings,
                window_start: datetime, end: datetime) -> list[Flag]:
    total = sum(past.values())
    if total < s.rare_purpose_min_history:
        return []
    flags = []
    for purpose, count in sorted(now_counts.items()):
        words = rare_words(client, count, purpose, past[purpose], total, s)
        if words is None:
            continue
        first, last = await reader.ends(LogQuery(client=client, purpose=purpose, since=window_start, until=end))
        flag = _listed(Kind.RARE_PURPOSE, words[0], first, last, count, [client], words[1], words[2], purpose)
        if flag is not None:
            flags.append(flag)
    return flags


async def _outside(reader: _Reader, client: str, recent: Counter[int], kinds: dict[int, str], s: AnomalySettings,
                   end: datetime) -> Flag | None:
    """Hours wholly outside count whole; the entries of an hour the schedule cuts are read and checked."""
    count = 0
    first: list[Row] = []
    last: Row | None = None
    hours = sorted(h for h, n in recent.items() if n and kinds.get(h, "in") != "in")
    for h in hours:
        query = LogQuery(client=client, since=hour_start(h), until=min(hour_start(h + 1), end))
        if kinds[h] == "out":
            count += recent[h]
            if len(first) < MAX_LISTED:
                page = await reader.log.search(replace(query, limit=MAX_LISTED - len(first), oldest_first=True))
                reader.scanned += len(page.hits)
                first += rows_of(page.hits)
            if h == hours[-1]:
                newest = await reader.log.search(replace(query, limit=1))
                reader.scanned += len(newest.hits)
                last = next(iter(rows_of(newest.hits)), last)
        else:
            rows, _ = await reader.rows(query, MAX_DETAIL)
            outside = sorted((r for r in rows if not working(r.time, s)), key=lambda r: (r.time, r.index))
            count += len(outside)
            first += outside[:MAX_LISTED - len(first)]
            last = outside[-1] if outside else last
    if not count:
        return None
    severity, fr, en = outside_words(client, count, first[0].time if first else hour_start(0), s)
    return _listed(Kind.OUTSIDE_HOURS, severity, first, last, count, [client], fr, en)

