"""``GET /metrics``: Prometheus text that parses, counts what happened, and holds no personal value."""

from __future__ import annotations

import re

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.web.state import RUNTIME
from tests.gateway.conftest import Stack


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(stack: Stack) -> str:
    async with stack.client.session.get(stack.gateway.url + "/metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


async def test_metrics_count_requests_sources_and_decisions_without_personal_values(stack: Stack) -> None:
    population = stack.population
    people = [p for name in ("deceased_father", "child_out_of_school", "salaried_parent", "amo_tadamon",
                             "disabled_child") for p in population.fixture(name).members]
    for name in ("deceased_father", "child_out_of_school", "salaried_parent", "amo_tadamon", "disabled_child"):
        answer = await stack.client.verify({"idcs": population.fixture(name).father.idcs}, "asd.eligibility",
                                           f"CASE-{name}")
        assert answer.status == 200
    cin = population.fixture("salaried_parent").father.cin
    assert cin is not None
    assert (await stack.client.verify({"cin": cin}, "asd.eligibility", "CASE-CIN", ["identity"])).status == 200
    unknown = population.unknown_idcs()
    assert (await stack.client.verify({"idcs": unknown}, "asd.eligibility", "CASE-X")).status == 404
    async with stack.client.session.post(stack.gateway.url + "/v1/verifications", data=b"{}",
                                         headers={"Authorization": "Bearer garbage"}) as resp:
        assert resp.status == 401

    text = await scrape(stack)
    values = samples(text)
    route = (("method", "POST"), ("route", "/v1/verifications"))
    assert values[("anss_gateway_requests_total", (*route, ("status", "200")))] == 6
    assert values[("anss_gateway_requests_total", (*route, ("status", "401")))] == 1
    assert values[("anss_gateway_request_duration_seconds_count", (("route", "/v1/verifications"),))] == 8
    ok_family = values[("anss_gateway_source_calls_total",
                        (("operation", "family"), ("outcome", "ok"), ("source", "civil_registry")))]
    assert ok_family >= 5
    assert values[("anss_gateway_source_calls_total",
                   (("operation", "person"), ("outcome", "not_found"), ("source", "civil_registry")))] == 1
    assert values[("anss_gateway_breaker_state", (("source", "health"), ("state", "closed")))] == 1
    assert values[("anss_gateway_breaker_state", (("source", "health"), ("state", "open")))] == 0
    assert values[("anss_gateway_replay_decisions_total", (("decision", "first_use"),))] == 7
    assert values[("anss_gateway_rate_limit_decisions_total", (("decision", "allowed"),))] == 7
    assert values[("anss_gateway_access_log_append_duration_seconds_count", ())] == 8

    # no identifier, name or pseudonym of anyone whose data flowed, nor a path with a value in it
    runtime = stack.gateway.runner.app[RUNTIME]
    secrets = {unknown, cin}
    for p in people:
        secrets |= {p.idcs, p.first_name, p.last_name, runtime.pseudonymiser.pseudonym("idcs", p.idcs)}
        secrets |= {p.cin} if p.cin else set()
    leaked = sorted(s for s in secrets if s and s in text)
    assert not leaked, leaked
    label_values = [(k, v) for family in text_string_to_metric_families(text) for s in family.samples
                    for k, v in s.labels.items()]
    assert {k for k, _ in label_values} <= {"route", "method", "status", "source", "operation", "outcome", "state",
                                            "decision", "le"}
    shaped = [v for _, v in label_values if re.search(r"[0-9]{10}|[A-Z]{1,2}[0-9]{5,6}|[0-9a-f]{32}", v)]
    assert not shaped, f"identifier-shaped label values: {shaped}"


def test_a_method_outside_https_is_one_label_and_refused_calls_are_not_timed() -> None:
    """Whatever token a client sends as its method (the pure-Python HTTP parser accepts any) becomes ``_OTHER``,
    never a new series per value; a call the breaker or the bulkhead refused is counted but not timed."""
    from gateway.web.metrics import Metrics

    metrics = Metrics()
    for method in ("POST", "X1384914220", "BERRADA"):
        metrics.request("unmatched", method, 405, 0.001)
    metrics.source_call("health", "coverage", "ok", 0.2)
    metrics.source_call("health", "coverage", "source_circuit_open", 0.0)
    metrics.source_call("health", "coverage", "source_bulkhead_full", 0.05)
    values = samples(generate_latest(metrics.registry).decode())
    methods = {dict(labels)["method"] for (name, labels) in values if name == "anss_gateway_requests_total"}
    assert methods == {"POST", "_OTHER"}
    assert values[("anss_gateway_requests_total", (("method", "_OTHER"), ("route", "unmatched"),
                                                   ("status", "405")))] == 2
    assert values[("anss_gateway_source_call_duration_seconds_count", (("source", "health"),))] == 1
    assert values[("anss_gateway_source_calls_total", (("operation", "coverage"), ("outcome", "source_circuit_open"),
                                                       ("source", "health")))] == 1
