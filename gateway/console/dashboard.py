"""The operations dashboard (``/console/dashboard``): what the gateway did over the last 24 hours and how its
administrations and batches stand now, as server-rendered SVG charts with a table of the same numbers each.

* **Requests per hour, by outcome** — from the hourly aggregates' request rows (``AccessLog.hourly``): each
  clock hour's requests split into answered (neither 4xx nor 5xx), refused (4xx) and errors (5xx); aggregated
  anonymous refusals count by their ``count``;
* **Requests by client** over the 24 hours, split the same way, the busiest clients' own hours (one small chart
  each), and a table per client and outcome;
* **Administrations** — per source, p50 and p99 of the call time estimated from the aggregates' latency
  histograms (``gateway.audit.aggregates.quantile``) and the error rate (the entries whose source status was
  neither ``ok`` nor ``not_found``);
* **Circuit breakers now** — read from the running connectors (``connectors.resilience.Resilient``);
* **Batches** — the batches submitted over the last 7 days (their ``batch_submitted`` entries) and their
  progress from the batch store (``SqliteBatchStore.progress``).

Everything is read off the event loop (the store's reads) and holds no personal data. See docs/officers.md.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from connectors.resilience import Resilient
from gateway.audit.aggregates import HourlyRow, hour_of, hour_start, quantile
from gateway.audit.query import LogQuery
from gateway.batch.store import Progress
from gateway.console.charts import Chart, Segment, bars, columns
from gateway.console.i18n import Translator
from gateway.console.web import Page, page
from gateway.web.heavy import heavy_read
from gateway.web.state import BATCHES, Runtime

HOURS = 24
CATEGORIES = ("ok", "refused", "error")
MAX_CLIENTS = 12  # clients shown in the chart (the table lists them all)
MAX_SMALL = 6  # clients with a chart of their own hours
BATCH_DAYS = 7
MAX_BATCHES = 10


@dataclass(frozen=True)
class SourceStats:
    name: str
    calls: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class Breaker:
    name: str
    state: str  # closed, open, half_open
    calls_in_window: int
    failure_rate: float
    refused: int


@dataclass(frozen=True)
class BatchRow:
    batch_id: str
    client: str
    purpose: str
    status: str
    total: int
    done: int
    failed: int
    pending: int
    chart: Chart


@dataclass(frozen=True)
class Dashboard:
    start: datetime
    now: datetime
    total: Counter[str]  # per category, over the 24 hours
    hours: list[tuple[str, Counter[str]]]  # (local hour label, per category), oldest first
    clients: list[tuple[str, Counter[str]]]  # (client label, per category), busiest first
    outcomes: list[tuple[str, str, int]]  # (client label, outcome, requests), busiest first
    sources: list[SourceStats]
    breakers: list[Breaker]
    batches: list[BatchRow]
    charts: dict[str, Chart]
    client_hours: list[tuple[str, Chart]]  # the busiest clients' own hours, by outcome


def category(row: HourlyRow) -> Counter[str]:
    ok = row.requests - row.refused - row.errors
    return Counter({"ok": max(ok, 0), "refused": row.refused, "error": row.errors})


def _breakers(runtime: Runtime) -> list[Breaker]:
    found = []
    for name, connector in sorted(runtime.federation.connectors.items()):
        if isinstance(connector, Resilient):
            snap = connector.breaker.snapshot()
            found.append(Breaker(name, str(snap["state"]), int(snap["calls_in_window"]),
                                 float(snap["failure_rate"]), int(snap["refused"])))
    return found


async def _batches(runtime: Runtime, store: Any, now: datetime) -> list[Progress]:
    if store is None:
        return []
    page = await runtime.access_log.search(LogQuery(outcome="batch_submitted", since=now - timedelta(days=BATCH_DAYS),
                                                    limit=MAX_BATCHES))
    found = []
    for hit in page.hits:
        detail = hit.entry.get("detail")
        batch_id = detail.get("batch_id") if isinstance(detail, dict) else None
        if isinstance(batch_id, str):
            progress = await store.progress(batch_id)
            if progress is not None:
                found.append(progress)
    return found


async def gather(runtime: Runtime, batch_store: Any, t: Translator, now: datetime | None = None) -> Dashboard:
    """Read what the dashboard shows and build its charts in ``t``'s language."""
    now = now or datetime.now(UTC)
    first = hour_of(now) - HOURS + 1
    start = hour_start(first)
    until = now + timedelta(microseconds=1)
    requests = await runtime.access_log.hourly(start, until)
    per_source = await runtime.access_log.hourly(start, until, sources=True)
    per_hour: dict[int, Counter[str]] = defaultdict(Counter)
    per_client: dict[str, Counter[str]] = defaultdict(Counter)
    per_client_hour: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    outcomes: Counter[tuple[str, str]] = Counter()
    nobody = t("dash_no_client")
    for row in requests:
        split = category(row)
        per_hour[row.hour] += split
        per_client[row.client or nobody] += split
        per_client_hour[(row.client or nobody, row.hour)] += split
        outcomes[(row.client or nobody, row.outcome)] += row.requests
    hours = [(t.hour_label(hour_start(h)), per_hour.get(h, Counter())) for h in range(first, first + HOURS)]
    clients = sorted(per_client.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    total: Counter[str] = sum((c for _, c in clients), Counter())
    sources = _source_stats(per_source)
    progress = await _batches(runtime, batch_store, now)
    batches = [_batch_row(p, t) for p in progress]
    charts = {
        "hours": columns("chart-hours", t("dash_hours_title"), t("dash_hours_desc", **_totals(total)),
                         [label for label, _ in hours],
                         [[Segment(k, c[k], t("dash_hour_bar", hour=label, **_totals(c))) for k in CATEGORIES]
                          for label, c in hours]),
        "clients": bars("chart-clients", t("dash_clients_title"), t("dash_clients_desc", clients=len(clients)),
                        [name for name, _ in clients[:MAX_CLIENTS]],
                        [[Segment(k, c[k], t("dash_client_bar", client=name, **_totals(c))) for k in CATEGORIES]
                         for name, c in clients[:MAX_CLIENTS]],
                        [f"{sum(c.values()):,}".replace(",", "\u202f") for _, c in clients[:MAX_CLIENTS]]),
        "sources": bars("chart-sources", t("dash_sources_title"), t("dash_sources_desc", sources=len(sources)),
                        [s.name for s in sources],
                        [[Segment("p50", s.p50_ms or 0, t("dash_source_p50", source=s.name, ms=_ms(s.p50_ms))),
                          Segment("p99", s.p99_ms or 0, t("dash_source_p99", source=s.name, ms=_ms(s.p99_ms)))]
                         for s in sources],
                        [t("dash_source_total", ms=_ms(s.p99_ms), rate=t.percent(s.error_rate)) for s in sources],
                        grouped=True, row_height=34, label_width=150),
    }
    labels = [label for label, _ in hours]
    client_hours = [(name, columns(f"chart-client-{i}", t("dash_client_hours_title", client=name),
                                   t("dash_client_hours_desc", client=name, **_totals(c)), labels,
                                   [[Segment(k, per_client_hour[(name, h)][k],
                                             t("dash_client_hour_bar", client=name, hour=label,
                                               **_totals(per_client_hour[(name, h)]))) for k in CATEGORIES]
                                    for label, h in zip(labels, range(first, first + HOURS), strict=True)],
                                   width=360, height=130, label_every=6))
                    for i, (name, c) in enumerate(clients[:MAX_SMALL])]
    return Dashboard(start, now, total, hours, clients, sorted(((c, o, n) for (c, o), n in outcomes.items()),
                                                              key=lambda x: (-x[2], x[0], x[1])),
                     sources, _breakers(runtime), batches, charts, client_hours)


def _totals(c: Counter[str]) -> dict[str, int]:
    return {"ok": c["ok"], "refused": c["refused"], "errors": c["error"]}


def _ms(value: float | None) -> str:
    return "—" if value is None else (f"{value:.1f}" if value < 10 else f"{value:,.0f}")


def _source_stats(rows: list[HourlyRow]) -> list[SourceStats]:
    calls: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    histograms: dict[str, list[int]] = {}
    for row in rows:
        name = row.source or ""
        calls[name] += row.entries
        errors[name] += row.errors
        have = histograms.setdefault(name, [0] * len(row.latency))
        for i, n in enumerate(row.latency):
            have[i] += n
    return [SourceStats(name, calls[name], errors[name], quantile(histograms[name], 0.5),
                        quantile(histograms[name], 0.99)) for name in sorted(calls)]


def _batch_row(p: Progress, t: Translator) -> BatchRow:
    b = p.batch
    segments = [Segment("ok", p.done, t("dash_batch_done", count=p.done)),
                Segment("error", p.failed, t("dash_batch_failed", count=p.failed)),
                Segment("pending", p.pending, t("dash_batch_pending", count=p.pending))]
    chart = bars(f"chart-batch-{b.batch_id}", t("dash_batch_title", batch=b.batch_id),
                 t("dash_batch_desc", done=p.done, failed=p.failed, pending=p.pending, total=b.total),
                 [b.client], [segments], [f"{(p.done + p.failed) * 100 // max(b.total, 1)} %"], row_height=30,
                 label_width=130)
    return BatchRow(b.batch_id, b.client, b.purpose, b.status, b.total, p.done, p.failed, p.pending, chart)


@page()
async def show(current: Page) -> web.Response:
    """``GET /console/dashboard`` (logged ``console_dashboard_shown``)."""
    current.note.outcome = "console_dashboard_shown"
    service = current.request.app.get(BATCHES)
    async with heavy_read(current.runtime):  # one of the officers' heavy reads (gateway.audit.heavy)
        found = await gather(current.runtime, service.store if service is not None else None, current.t)
    return current.render("dashboard.html", d=found, zone=current.t.zone_name, ms=_ms)
