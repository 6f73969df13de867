"""Anomaly flags over the access log: what deserves a security officer's look, explained in plain words.

Pure functions, no I/O (``gateway.audit.anomaly_view`` computes the same flags from the hourly aggregates):
decoded entries (``LogHit``: the index and the canonical entry as a dict, or the ``Row``
the detectors read of it) of a time window, the time the window ends, and the thresholds of ``[audit.anomalies]``
(``AnomalySettings``). ``detect`` (``detect_rows``)
looks at the last ``window_hours`` (*the window*) and measures each client against its own history over the
``baseline_days`` before it (*the baseline*); so the entries given must reach back ``lookback(settings)``.

=======================  ==========================================================================================
kind                     flagged when
=======================  ==========================================================================================
``volume``               in one clock hour of the window a client made at least ``volume_min_requests`` requests
                         and ``volume_factor`` times its usual hourly volume: the median of its *active* hours
                         of the baseline (hours without a request do not count; with no history at all, one
                         request an hour)
``outside_hours``        a client made requests outside ``working_days`` × ``working_hours`` in ``timezone``
``refusal_burst``        a client was refused (4xx) ``refusal_burst`` times within ``refusal_burst_minutes``
``citizen_many_clients`` one citizen (pseudonym) was looked up, for a purpose, by ``citizen_clients`` distinct
                         clients or more within ``citizen_window_hours``
``rare_purpose``         a client queried for a purpose making up less than ``rare_purpose_share`` of its own
                         queries over the baseline, once that history holds ``rare_purpose_min_history`` queries
``anonymous_refusals``   requests refused before any client was known (no or no valid client assertion, no
                         session...) ``anonymous_refusals`` times within ``anonymous_refusals_minutes`` (an
                         entry of aggregated refusals, ``refusals_aggregated``, counts by its ``detail.count``)
=======================  ==========================================================================================

Each flag is a frozen ``Flag``: kind, severity, the clients and entries concerned, and an explanation in
French and in English. Entries without a client (refused before the caller was known) are attributed to no
one: they count only for ``anonymous_refusals``, a flag with no client. Only the pseudonym of a citizen ever
appears, as in the log itself.

Citizens reading their own access log (client ``citizen``, ``gateway.audit.record.CITIZEN_ACTOR``) are many
people behind one name, using it at any hour: they count only for ``refusal_burst`` (token guessing), never
for the volume, working hours, citizen or purpose flags.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from gateway.audit import anomaly_words as w
from gateway.audit.aggregates import AGGREGATED
from gateway.audit.query import LogHit
from gateway.audit.record import CITIZEN_ACTOR
from gateway.config.settings import AnomalySettings

MAX_LISTED = 100  # entries listed per flag (oldest first); ``count`` says how many there were in all
HOUR = timedelta(hours=1)


class Kind(StrEnum):
    VOLUME = "volume"
    OUTSIDE_HOURS = "outside_hours"
    REFUSAL_BURST = "refusal_burst"
    CITIZEN_MANY_CLIENTS = "citizen_many_clients"
    RARE_PURPOSE = "rare_purpose"
    ANONYMOUS_REFUSALS = "anonymous_refusals"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


SEVERITY_RANK = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}


@dataclass(frozen=True)
class Flag:
    """One anomaly: what, how serious, who and which entries, and why — in French and in English."""

    kind: Kind
    severity: Severity
    clients: tuple[str, ...]
    entries: tuple[int, ...]  # indices of the entries concerned, oldest first (at most MAX_LISTED)
    count: int  # how many entries are concerned in all
    start: datetime  # the first and the last of them
    end: datetime
    explanation_fr: str
    explanation_en: str
    subject: str | None = None  # a citizen's pseudonym (citizen_many_clients)
    purpose: str | None = None  # rare_purpose

    @property
    def id(self) -> str:
        """Stable while the entries stay: the kind and the first entry concerned."""
        return f"{self.kind.value}-{self.entries[0]}" if self.entries else self.kind.value

    def explanation(self, lang: str) -> str:
        return self.explanation_fr if lang == "fr" else self.explanation_en

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind.value, "severity": self.severity.value, "clients": list(self.clients),
            "entries": list(self.entries), "count": self.count,
            "start": self.start.isoformat(timespec="seconds"), "end": self.end.isoformat(timespec="seconds"),
            "subject": self.subject, "purpose": self.purpose,
            "explanation": {"fr": self.explanation_fr, "en": self.explanation_en},
        }


@dataclass(frozen=True, slots=True)
class Row:
    """The fields of an entry the detectors read."""

    index: int
    time: datetime
    client: str | None
    purpose: str | None
    subject: str | None
    status: int
    outcome: str
    weight: int = 1  # the requests it stands for: an entry of aggregated refusals stands for ``detail.count``

    @classmethod
    def of(cls, hit: LogHit) -> Row | None:
        e = hit.entry
        try:
            time = datetime.fromisoformat(str(e["time"]))
        except (KeyError, ValueError):
            return None
        if time.tzinfo is None:
            time = time.replace(tzinfo=UTC)
        status = e.get("status")
        outcome = str(e.get("outcome") or "")
        detail = e.get("detail")
        count = detail.get("count") if outcome == AGGREGATED and isinstance(detail, dict) else None
        return cls(hit.index, time, _text(e.get("client")), _text(e.get("purpose")), _text(e.get("subject")),
                   status if isinstance(status, int) else 0, outcome,
                   count if type(count) is int and count > 0 else 1)

    @property
    def refused(self) -> bool:
        return 400 <= self.status < 500


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Window:
    """The entries of the window and of the baseline before it, each oldest first."""

    start: datetime
    end: datetime
    recent: tuple[Row, ...]
    history: tuple[Row, ...]

    @classmethod
    def of(cls, hits: Iterable[LogHit], now: datetime, settings: AnomalySettings) -> Window:
        return cls.of_rows(rows_of(hits), now, settings)

    @classmethod
    def of_rows(cls, rows: Iterable[Row], now: datetime, settings: AnomalySettings) -> Window:
        start = now - timedelta(hours=settings.window_hours)
        baseline_start = start - timedelta(days=settings.baseline_days)
        rows = sorted(rows, key=lambda r: (r.time, r.index))
        return cls(start, now, tuple(r for r in rows if start <= r.time <= now),
                   tuple(r for r in rows if baseline_start <= r.time < start))

    def without(self, client: str) -> Window:
        """The same window without the entries of ``client``."""
        return Window(self.start, self.end, tuple(r for r in self.recent if r.client != client),
                      tuple(r for r in self.history if r.client != client))


def lookback(settings: AnomalySettings) -> timedelta:
    """How far before ``now`` the entries given to ``detect`` must reach."""
    return timedelta(hours=settings.window_hours) + timedelta(days=settings.baseline_days)


def rows_of(hits: Iterable[LogHit]) -> list[Row]:
    """The rows of the entries that have a readable time (the others cannot be placed in a window)."""
    return [r for r in map(Row.of, hits) if r is not None]


def detect(hits: Iterable[LogHit], now: datetime, settings: AnomalySettings) -> list[Flag]:
    """Every flag of the window ending at ``now``, the most serious first, then the most recent."""
    return detect_rows(rows_of(hits), now, settings)


def detect_rows(rows: Iterable[Row], now: datetime, settings: AnomalySettings) -> list[Flag]:
    """``detect`` over rows already read from the entries (a scan keeps rows, far smaller than entries)."""
    window = Window.of_rows(rows, now, settings)
    agencies = window.without(CITIZEN_ACTOR)
    flags = [*volume(agencies, settings), *outside_hours(agencies, settings), *refusal_bursts(window, settings),
             *citizen_many_clients(agencies, settings), *rare_purposes(agencies, settings),
             *anonymous_refusals(window, settings)]
    flags.sort(key=lambda f: f.start, reverse=True)
    flags.sort(key=lambda f: SEVERITY_RANK[f.severity])
    return flags


def _flag(kind: Kind, severity: Severity, rows: Sequence[Row], clients: Iterable[str], fr: str, en: str,
          count: int | None = None, **extra: str | None) -> Flag:
    return Flag(kind, severity, tuple(sorted(set(clients))), tuple(r.index for r in rows[:MAX_LISTED]),
                len(rows) if count is None else count, rows[0].time, rows[-1].time, fr, en, **extra)


def _by_client(rows: Iterable[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row.client is not None:
            grouped[row.client].append(row)
    return grouped


# --- volume ---------------------------------------------------------------------------------------------------------


def _hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def volume(window: Window, s: AnomalySettings) -> list[Flag]:
    flags = []
    history = _by_client(window.history)
    for client, rows in sorted(_by_client(window.recent).items()):
        active_hours = Counter(_hour(r.time) for r in history.get(client, ()))
        usual = statistics.median(active_hours.values()) if active_hours else 0
        threshold = max(s.volume_min_requests, s.volume_factor * max(usual, 1))
        per_hour: dict[datetime, list[Row]] = defaultdict(list)
        for row in rows:
            per_hour[_hour(row.time)].append(row)
        busy = sorted(h for h, in_hour in per_hour.items() if len(in_hour) >= threshold)
        for run in _consecutive(busy):
            concerned = [r for h in run for r in per_hour[h]]
            peak = max(len(per_hour[h]) for h in run)
            severity, fr, en = volume_words(client, len(concerned), peak, usual, run[0], run[-1], s)
            flags.append(_flag(Kind.VOLUME, severity, concerned, [client], fr, en))
    return flags


def volume_words(client: str, count: int, peak: int, usual: float, first_hour: datetime, last_hour: datetime,
                 s: AnomalySettings) -> tuple[Severity, str, str]:
    """The severity and the explanations of a run of busy clock hours ``first_hour`` .. ``last_hour`` (UTC)."""
    ratio = peak / max(usual, 1)
    severity = Severity.HIGH if ratio >= 2 * s.volume_factor else Severity.MEDIUM
    first, last = w.local(first_hour, s), w.local(last_hour + HOUR, s)
    period_fr = f"entre {w.clock(first)} et {w.clock(last)} le {w.date_fr(first)}"
    period_en = f"between {w.clock(first)} and {w.clock(last)} on {w.date_en(first)}"
    if usual:
        base_fr = (f"soit {w.num_fr(ratio)} fois son volume habituel (médiane de {w.num_fr(usual)} requêtes "
                   f"par heure d'activité sur les {s.baseline_days} jours précédents)")
        base_en = (f"{w.num_en(ratio)} times its usual volume (a median of {w.num_en(usual)} requests per "
                   f"active hour over the previous {s.baseline_days} days)")
    else:
        base_fr = f"alors qu'il n'avait fait aucune requête sur les {s.baseline_days} jours précédents"
        base_en = f"while it made no request at all over the previous {s.baseline_days} days"
    return (severity,
            f"{client} a fait {count} requêtes {period_fr} (jusqu'à {peak} en une heure), {base_fr}.",
            f"{client} made {count} requests {period_en} (up to {peak} in one hour), {base_en}.")


def _consecutive(hours: Sequence[datetime]) -> list[list[datetime]]:
    runs: list[list[datetime]] = []
    for h in hours:
        if runs and h - runs[-1][-1] == HOUR:
            runs[-1].append(h)
        else:
            runs.append([h])
    return runs


# --- outside working hours ------------------------------------------------------------------------------------------


def working(t: datetime, s: AnomalySettings) -> bool:
    """Whether ``t`` falls within the working days and hours, in the configured time zone."""
    local = t.astimezone(ZoneInfo(s.timezone))
    minute = local.hour * 60 + local.minute
    return local.weekday() in s.working_days and s.working_hours[0] <= minute < s.working_hours[1]


def outside_words(client: str, count: int, first_time: datetime, s: AnomalySettings) -> tuple[Severity, str, str]:
    first = w.local(first_time, s)
    severity = Severity.HIGH if count >= s.volume_min_requests else Severity.MEDIUM
    return (severity,
            f"{client} a fait {w.plural_fr(count, 'requête')} en dehors des heures de travail "
            f"({w.schedule_fr(s)}), la première le {w.weekday_fr(first)} {w.date_fr(first)} à {w.clock(first)}.",
            f"{client} made {w.plural_en(count, 'request')} outside working hours ({w.schedule_en(s)}), "
            f"the first on {w.weekday_en(first)} {w.date_en(first)} at {w.clock(first)}.")


def outside_hours(window: Window, s: AnomalySettings) -> list[Flag]:
    flags = []
    for client, rows in sorted(_by_client(r for r in window.recent if not working(r.time, s)).items()):
        severity, fr, en = outside_words(client, len(rows), rows[0].time, s)
        flags.append(_flag(Kind.OUTSIDE_HOURS, severity, rows, [client], fr, en))
    return flags


# --- bursts of refusals ---------------------------------------------------------------------------------------------


def _bursts(rows: Sequence[Row], span: timedelta, enough: Callable[[deque[Row]], bool]) -> list[list[Row]]:
    """Maximal runs of ``rows`` (oldest first) in which some ``span``-long stretch satisfies ``enough`` (called
    with the rows of the stretch); overlapping stretches merge into one run."""
    runs: list[list[Row]] = []
    stretch: deque[Row] = deque()
    last_end = -1  # position (in rows) of the last row of the current run
    for position, row in enumerate(rows):
        stretch.append(row)
        while row.time - stretch[0].time > span:
            stretch.popleft()
        if enough(stretch):
            first = position - len(stretch) + 1
            if runs and first <= last_end:
                runs[-1].extend(rows[last_end + 1:position + 1])
            else:
                runs.append(list(stretch))
            last_end = position
    return runs


def refusal_bursts(window: Window, s: AnomalySettings) -> list[Flag]:
    flags = []
    span = timedelta(minutes=s.refusal_burst_minutes)
    for client, rows in sorted(_by_client(r for r in window.recent if r.refused).items()):
        for run in _bursts(rows, span, lambda stretch: len(stretch) >= s.refusal_burst):
            minutes = max(1, round((run[-1].time - run[0].time).total_seconds() / 60))
            code, _ = Counter(r.outcome for r in run).most_common(1)[0]
            first, last = w.local(run[0].time, s), w.local(run[-1].time, s)
            severity = Severity.HIGH if len(run) >= 3 * s.refusal_burst else Severity.MEDIUM
            flags.append(_flag(
                Kind.REFUSAL_BURST, severity, run, [client],
                f"{client} a essuyé {len(run)} refus en {w.plural_fr(minutes, 'minute')} (entre {w.clock(first)} et "
                f"{w.clock(last)} le {w.date_fr(first)}), le plus souvent « {code} » ; le seuil est de "
                f"{s.refusal_burst} refus en {w.num_fr(s.refusal_burst_minutes)} minutes.",
                f"{client} was refused {len(run)} times in {w.plural_en(minutes, 'minute')} (between {w.clock(first)} "
                f"and {w.clock(last)} on {w.date_en(first)}), mostly \"{code}\"; the threshold is {s.refusal_burst} "
                f"refusals in {w.num_en(s.refusal_burst_minutes)} minutes.",
            ))
    return flags


def anonymous_refusals(window: Window, s: AnomalySettings) -> list[Flag]:
    """Bursts of refusals attributed to no client: someone without valid credentials knocking (guessed or
    replayed assertions, forged sessions, probing for resources)."""
    flags = []
    span = timedelta(minutes=s.anonymous_refusals_minutes)
    rows = [r for r in window.recent if r.client is None and r.refused]
    for run in _bursts(rows, span, lambda stretch: sum(r.weight for r in stretch) >= s.anonymous_refusals):
        refused = sum(r.weight for r in run)  # an entry of aggregated refusals counts by its count
        minutes = max(1, round((run[-1].time - run[0].time).total_seconds() / 60))
        code = _most_common_code(run)
        first, last = w.local(run[0].time, s), w.local(run[-1].time, s)
        severity = Severity.HIGH if refused >= 3 * s.anonymous_refusals else Severity.MEDIUM
        flags.append(_flag(
            Kind.ANONYMOUS_REFUSALS, severity, run, [],
            f"{refused} requêtes sans client identifié ont été refusées en {w.plural_fr(minutes, 'minute')} (entre "
            f"{w.clock(first)} et {w.clock(last)} le {w.date_fr(first)}), le plus souvent « {code} » : quelqu'un "
            f"sans identifiants valides insiste ; le seuil est de {s.anonymous_refusals} refus en "
            f"{w.num_fr(s.anonymous_refusals_minutes)} minutes.",
            f"{refused} requests from no identified client were refused in {w.plural_en(minutes, 'minute')} "
            f"(between {w.clock(first)} and {w.clock(last)} on {w.date_en(first)}), mostly \"{code}\": someone "
            f"without valid credentials keeps trying; the threshold is {s.anonymous_refusals} refusals in "
            f"{w.num_en(s.anonymous_refusals_minutes)} minutes.",
            count=refused,
        ))
    return flags


def _most_common_code(run: Sequence[Row]) -> str:
    """The refusal code most of the run's requests got (aggregated refusals carry theirs in ``detail.code``,
    which the row does not keep: they count under their own outcome)."""
    weights: Counter[str] = Counter()
    for r in run:
        weights[r.outcome] += r.weight
    return weights.most_common(1)[0][0]


# --- one citizen, many clients --------------------------------------------------------------------------------------


def citizen_many_clients(window: Window, s: AnomalySettings) -> list[Flag]:
    flags = []
    span = timedelta(hours=s.citizen_window_hours)
    by_subject: dict[str, list[Row]] = defaultdict(list)
    for row in window.recent:
        if row.subject and row.client and row.purpose:
            by_subject[row.subject].append(row)

    def enough(stretch: Iterable[Row]) -> bool:
        return len({r.client for r in stretch}) >= s.citizen_clients

    for subject, rows in sorted(by_subject.items()):
        for run in _bursts(rows, span, enough):
            clients = sorted({r.client for r in run if r.client})
            hours = max(1, round((run[-1].time - run[0].time).total_seconds() / 3600))
            severity = Severity.HIGH if len(clients) >= 2 * s.citizen_clients else Severity.MEDIUM
            names = ", ".join(clients)
            flags.append(_flag(
                Kind.CITIZEN_MANY_CLIENTS, severity, run, clients,
                f"Le citoyen de pseudonyme {subject[:12]}… a été consulté par {len(clients)} clients différents en "
                f"{w.plural_fr(hours, 'heure')} ({names}) ; le seuil est de {s.citizen_clients} clients en "
                f"{w.num_fr(s.citizen_window_hours)} heures.",
                f"The citizen with pseudonym {subject[:12]}… was looked up by {len(clients)} different clients in "
                f"{w.plural_en(hours, 'hour')} ({names}); the threshold is {s.citizen_clients} clients in "
                f"{w.num_en(s.citizen_window_hours)} hours.",
                subject=subject,
            ))
    return flags


# --- rarely used purposes -------------------------------------------------------------------------------------------


def rare_words(client: str, count: int, purpose: str, past: int, total: int,
               s: AnomalySettings) -> tuple[Severity, str, str] | None:
    """None when ``purpose`` is not rare for ``client`` (``past`` of its ``total`` queries of the baseline)."""
    share = past / total
    if share >= s.rare_purpose_share:
        return None
    if past:
        why_fr = (f"un motif qui ne représente que {w.pct_fr(share)} de ses {total} requêtes des "
                  f"{s.baseline_days} jours précédents (seuil : {w.pct_fr(s.rare_purpose_share)})")
        why_en = (f"a purpose that makes up only {w.pct_en(share)} of its {total} queries over the previous "
                  f"{s.baseline_days} days (threshold: {w.pct_en(s.rare_purpose_share)})")
    else:
        why_fr = f"un motif absent de ses {total} requêtes des {s.baseline_days} jours précédents"
        why_en = f"a purpose absent from its {total} queries over the previous {s.baseline_days} days"
    return (Severity.LOW if past else Severity.MEDIUM,
            f"{client} a fait {w.plural_fr(count, 'requête')} pour le motif « {purpose} », {why_fr}.",
            f"{client} made {w.plural_en(count, 'query', 'queries')} for the purpose \"{purpose}\", {why_en}.")


def rare_purposes(window: Window, s: AnomalySettings) -> list[Flag]:
    flags = []
    history = _by_client(r for r in window.history if r.purpose)
    for client, rows in sorted(_by_client(r for r in window.recent if r.purpose).items()):
        past = Counter(r.purpose for r in history.get(client, ()))
        total = sum(past.values())
        if total < s.rare_purpose_min_history:
            continue
        by_purpose: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            by_purpose[str(row.purpose)].append(row)
        for purpose, concerned in sorted(by_purpose.items()):
            words = rare_words(client, len(concerned), purpose, past[purpose], total, s)
            if words is not None:
                severity, fr, en = words
                flags.append(_flag(Kind.RARE_PURPOSE, severity, concerned, [client], fr, en, purpose=purpose))
    return flags
