"""Prometheus metrics of one gateway process, served at ``GET /metrics`` (text exposition format).

Every label is a bounded, configured value — a route template, a method (one of HTTP's, else ``_OTHER``), a
status, an administration, an operation, an outcome code — never a path with values in it, an identifier or
anything a request carried: a test scans the output after the fixtures ran. A call the breaker or the bulkhead
refused is counted (its outcome) but not timed: it never reached the administration. One registry per
application (a test process builds many), one process per pod.

    anss_gateway_requests_total{route, method, status}           API requests answered
    anss_gateway_request_duration_seconds{route}                  their latency (histogram)
    anss_gateway_source_calls_total{source, operation, outcome}   calls to administrations: ok, not_found, or the
                                                                  failure's stable code (source_timeout, …)
    anss_gateway_source_call_duration_seconds{source}             their latency (histogram)
    anss_gateway_breaker_state{source, state}                     1 for the breaker's current state
    anss_gateway_breaker_refused_total{source}                    calls refused by the breaker (open, or half-open
                                                                  beyond its trial calls)
    anss_gateway_bulkhead_rejections_total{source}                calls refused by a full bulkhead
    anss_gateway_source_in_flight{source}                         calls in flight now
    anss_gateway_access_log_append_duration_seconds               appending one access-log entry (histogram)
    anss_gateway_replay_decisions_total{decision}                 first_use, replayed, history_lost (the replay
                                                                  cache was reset after the assertion), unavailable
    anss_gateway_unparsable_requests_total{status}                requests the HTTP parser refused
                                                                  (gateway/web/protocol.py)
    anss_gateway_rate_limit_decisions_total{decision}             allowed, limited, unavailable
    anss_gateway_batch_subjects_total{outcome}                    batch subjects answered: done, failed
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from connectors.resilience import CLOSED, HALF_OPEN, OPEN, Resilient

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _SourcesCollector(Collector):
    """Breakers and bulkheads, read from the connectors at scrape time."""

    def __init__(self, connectors: Callable[[], Mapping[str, Any]]) -> None:
        self._connectors = connectors

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily("anss_gateway_breaker_state", "1 for the circuit breaker's current state",
                                  labels=["source", "state"])
        refused = CounterMetricFamily("anss_gateway_breaker_refused",
                                      "Calls refused by the breaker: while open, or beyond its trial calls while "
                                      "half-open", labels=["source"])
        rejected = CounterMetricFamily("anss_gateway_bulkhead_rejections", "Calls refused by a full bulkhead",
                                       labels=["source"])
        in_flight = GaugeMetricFamily("anss_gateway_source_in_flight", "Calls in flight to the administration",
                                      labels=["source"])
        for name, connector in sorted(self._connectors().items()):
            if not isinstance(connector, Resilient):
                continue
            current = connector.breaker.current()
            for candidate in (CLOSED, HALF_OPEN, OPEN):
                state.add_metric([name, candidate], 1.0 if candidate == current else 0.0)
            refused.add_metric([name], connector.breaker.refused)
            rejected.add_metric([name], connector.bulkhead_rejections)
            in_flight.add_metric([name], connector.in_flight)
        yield from (state, refused, rejected, in_flight)


class _ParserCollector(Collector):
    """The HTTP parser's refusals, read from the app's ``ParserRefusals`` at scrape time."""

    def __init__(self, counts: Callable[[], Mapping[int, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        refused = CounterMetricFamily("anss_gateway_unparsable_requests", "Requests the HTTP parser refused",
                                      labels=["status"])
        for status, count in sorted(self._counts().items()):
            refused.add_metric([str(status)], count)
        yield refused


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})
NOT_CALLED = frozenset({"source_circuit_open", "source_bulkhead_full"})  # refused here, before any call


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("anss_gateway_requests", "API requests answered", ["route", "method", "status"],
                                registry=r)
        self.request_latency = Histogram("anss_gateway_request_duration_seconds", "API request latency", ["route"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.source_calls = Counter("anss_gateway_source_calls", "Calls to administrations by outcome",
                                    ["source", "operation", "outcome"], registry=r)
        self.source_latency = Histogram("anss_gateway_source_call_duration_seconds", "Administration call latency",
                                        ["source"], buckets=LATENCY_BUCKETS, registry=r)
        self.append_latency = Histogram("anss_gateway_access_log_append_duration_seconds",
                                        "Appending one access-log entry", buckets=LATENCY_BUCKETS, registry=r)
        self.replay = Counter("anss_gateway_replay_decisions", "Replay-cache decisions on client assertions",
                              ["decision"], registry=r)
        self.rate_limit = Counter("anss_gateway_rate_limit_decisions", "Rate-limit decisions", ["decision"],
                                  registry=r)
        self.batch_subjects = Counter("anss_gateway_batch_subjects", "Batch subjects answered", ["outcome"],
                                      registry=r)
        self._connectors: Mapping[str, Any] = {}
        # the labelled children of the hot counters, looked up once per label set (labels() locks and builds)
        self._source_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        r.register(_SourcesCollector(lambda: self._connectors))
        self._parser_refusals: Mapping[int, int] = {}
        r.register(_ParserCollector(lambda: self._parser_refusals))

    def watch_parser(self, by_status: Mapping[int, int]) -> None:
        """Report these counts of the HTTP parser's refusals (``ParserRefusals.by_status``)."""
        self._parser_refusals = by_status

    def watch(self, connectors: Mapping[str, Any]) -> None:
        """Report these connectors' breakers and bulkheads, and count their calls."""
        self._connectors = connectors
        for connector in connectors.values():
            if isinstance(connector, Resilient):
                connector.observe = self.source_call

    def source_call(self, source: str, operation: str, outcome: str, elapsed_s: float) -> None:
        key = (source, operation, outcome)
        children = self._source_children.get(key)
        if children is None:
            children = self._source_children[key] = (self.source_calls.labels(source, operation, outcome),
                                                      self.source_latency.labels(source))
        children[0].inc()
        if outcome not in NOT_CALLED:
            children[1].observe(elapsed_s)

    def request(self, route: str, method: str, status: int, elapsed_s: float) -> None:
        method = method if method in METHODS else "_OTHER"  # a method is what the client sent: any token
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (self.requests.labels(route, method, str(status)),
                                                       self.request_latency.labels(route))
        children[0].inc()
        children[1].observe(elapsed_s)


def route_of(request: web.Request) -> str:
    """The route template (``/v1/services/{service}``), never the path with its values; ``unmatched`` else."""
    try:
        canonical = request.match_info.route.resource.canonical  # type: ignore[union-attr]
    except AttributeError:
        return "unmatched"
    return str(canonical) if request.match_info.http_exception is None else "unmatched"


def handler(metrics: Metrics) -> Callable[[web.Request], Any]:
    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
    return serve_metrics
