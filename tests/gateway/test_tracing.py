"""OpenTelemetry traces: one trace per verification, a span per administration call, ``traceparent`` sent to the
administrations, and no personal value in any span; off unless the ``OTEL_*`` variables ask for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.config.settings import ConfigError
from gateway.web.state import RUNTIME
from gateway.web.tracing import provider_from_env, scrub_url
from tests.gateway.conftest import Stack, build_stack


class Recorder:
    """Stands in front of the education simulator: keeps each call's headers, forwards it unchanged."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.target = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.forward)
        return app

    async def forward(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        async with aiohttp.ClientSession() as session, session.request(
            request.method, self.target + request.path_qs, headers={
                k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")}) as resp:
            return web.Response(body=await resp.read(), status=resp.status,
                                content_type=resp.content_type)


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[Stack, InMemorySpanExporter, Recorder, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = provider_from_env({}, exporter)
    assert provider is not None
    recorder = Recorder()
    server = TestServer(recorder.app(), host="127.0.0.1")
    await server.start_server()

    async with build_stack(tmp_path, tracer_provider=provider) as stack:
        # MASSAR's connector goes through the recorder, which forwards to the simulator
        recorder.target = stack.settings.connector("education").base_url
        education = stack.gateway.runner.app[RUNTIME].federation.connectors["education"]
        inner = getattr(education, "inner", education)
        inner._origin = f"http://127.0.0.1:{server.port}"
        yield stack, exporter, recorder, provider
    await server.close()
    provider.shutdown()


async def test_one_trace_per_verification_with_a_span_per_administration_call(
    traced: tuple[Stack, InMemorySpanExporter, Recorder, TracerProvider]
) -> None:
    stack, exporter, recorder, provider = traced
    household = stack.population.fixture("amo_tadamon")
    answer = await stack.client.verify({"idcs": household.father.idcs}, "asd.eligibility", "CASE-TRACE")
    assert answer.status == 200
    assert provider.force_flush()  # what the batch processor still holds
    every = exporter.get_finished_spans()  # the client's JWKS fetch is a trace of its own
    server = [s for s in every if s.name == "POST /v1/verifications"]
    assert len(server) == 1 and server[0].parent is None
    trace_id = server[0].context.trace_id
    spans = [s for s in every if s.context.trace_id == trace_id]
    calls = [s for s in every if s.attributes and "anss.source" in s.attributes]
    assert calls and all(s.context.trace_id == trace_id for s in calls), "one trace for the whole verification"
    tallies = {source["name"]: source["calls"] for source in answer.json()["sources"]}
    assert {name: sum(1 for s in calls if s.attributes["anss.source"] == name) for name in tallies} == tallies
    assert {s.name for s in calls} >= {"civil_registry person", "civil_registry family", "education enrolment",
                                       "health coverage", "employment declarations"}
    http_clients = [s for s in spans if s.kind.name == "CLIENT"]
    assert len(http_clients) == sum(tallies.values())

    # traceparent reached MASSAR, in this trace; no baggage went out
    assert recorder.headers and all(h.get("traceparent", "").split("-")[1] == f"{trace_id:032x}"
                                    for h in recorder.headers)
    assert not any("baggage" in {k.lower() for k in h} for h in recorder.headers)

    # no identifier of the household in any span name or attribute
    secrets = {p.idcs for p in household.members} | {p.last_name for p in household.members}
    recorded = " ".join([s.name for s in spans] + [str(v) for s in spans for v in (s.attributes or {}).values()])
    assert not [x for x in secrets if x in recorded]


async def test_an_administration_that_does_not_know_the_subject_is_no_error_in_the_trace(
    traced: tuple[Stack, InMemorySpanExporter, Recorder, TracerProvider]
) -> None:
    """"Not known" is an answer (the metrics count it as not_found): its span is not an error, and carries no
    exception event; a failing administration's span is an error."""
    from opentelemetry.trace import StatusCode

    stack, exporter, _, provider = traced
    father = stack.population.fixture("child_out_of_school").father
    answer = await stack.client.verify({"idcs": father.idcs}, "asd.eligibility", "CASE-NF")
    assert answer.status == 200
    assert provider.force_flush()
    calls = [s for s in exporter.get_finished_spans() if s.attributes and "anss.source" in s.attributes]
    unknown = [s for s in calls if s.attributes.get("anss.outcome") == "not_found"]
    assert unknown, "this household has an administration that does not know one of its members"
    assert all(s.status.status_code is not StatusCode.ERROR and not s.events for s in unknown)
    assert all(s.status.status_code is not StatusCode.ERROR for s in calls if "anss.outcome" not in s.attributes)
    exporter.clear()
    stack.simulators.controls["health"].rogue = "soap_fault"
    assert (await stack.client.verify({"idcs": father.idcs}, "asd.eligibility", "CASE-FAULT")).status == 200
    assert provider.force_flush()
    failed = [s for s in exporter.get_finished_spans() if s.attributes and s.attributes.get("anss.source") == "health"]
    assert failed and all(s.status.status_code is StatusCode.ERROR for s in failed)


def test_tracing_is_off_by_default_and_follows_the_standard_variables() -> None:
    assert provider_from_env({}) is None
    assert provider_from_env({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert provider_from_env({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}) is None
    on = provider_from_env({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "gw-rabat-1"})
    assert on is not None and on.resource.attributes["service.name"] == "gw-rabat-1"
    on.shutdown()
    with pytest.raises(ConfigError, match="unknown exporter 'zipkin'"):
        provider_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_urls_lose_their_query_and_identifying_segments() -> None:
    assert scrub_url("http://127.0.0.1:8102/massar/v1/pupils/1234567890/enrolment?school_year=2025-2026") == (
        "http://127.0.0.1:8102/massar/v1/pupils/{id}/enrolment")
    assert scrub_url("/v1/consents?idcs=1234567890") == "/v1/consents"



async def test_a_gateway_tracing_from_the_environment_exports_its_last_spans_when_it_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OTLP/HTTP export to a collector on loopback: the batch processor would wait up to 5 s before sending, but the
    gateway shuts its own provider down on the way out, so the spans of the last requests are not lost."""
    received: list[bytes] = []

    async def traces(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    collector = web.Application()
    collector.router.add_post("/v1/traces", traces)
    server = TestServer(collector, host="127.0.0.1")
    await server.start_server()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{server.port}/v1/traces")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # nothing leaves before the gateway stops
    try:
        async with build_stack(tmp_path) as stack:
            answer = await stack.client.verify({"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                                               "asd.eligibility", "CASE-TRACE", ["identity"])
            assert answer.status == 200
            assert received == [], "the batch processor holds the spans until it is flushed"
        assert received and sum(len(r) for r in received) > 0
        assert any(b"civil_registry" in r for r in received), "the administration call's span was exported"
    finally:
        await server.close()


@pytest.mark.parametrize("flags", ["00", "01"])
async def test_a_clients_trace_context_is_not_read_and_only_traceparent_goes_on(
    traced: tuple[Stack, InMemorySpanExporter, Recorder, TracerProvider], flags: str
) -> None:
    """A client's ``traceparent`` (sampled or not) and ``tracestate`` change nothing: the request is a trace of
    the gateway's own, recorded, and the administrations get its ``traceparent`` only — never the client's text."""
    stack, exporter, recorder, provider = traced
    theirs = "0af7651916cd43dd8448eb211c80319c"
    household = stack.population.fixture("amo_tadamon")
    body = {"subject": {"idcs": household.father.idcs}, "purpose": "asd.eligibility", "case_ref": "CASE-CTX"}
    answer = await stack.client.request("POST", "/v1/verifications", body, headers={
        "traceparent": f"00-{theirs}-b7ad6b7169203331-{flags}", "tracestate": "vendor=1384914220"})
    assert answer.status == 200
    assert provider.force_flush()
    [server] = [s for s in exporter.get_finished_spans() if s.name == "POST /v1/verifications"]
    assert server.parent is None and f"{server.context.trace_id:032x}" != theirs
    assert recorder.headers and all(h["traceparent"].split("-")[1] == f"{server.context.trace_id:032x}"
                                    for h in recorder.headers)
    assert not any({"tracestate", "baggage"} & {k.lower() for k in h} for h in recorder.headers)


def test_the_exporters_names_and_the_service_name_follow_the_sdks_rules() -> None:
    upper = provider_from_env({"OTEL_TRACES_EXPORTER": "CONSOLE"})
    assert upper is not None, "enum values are case-insensitive"
    upper.shutdown()
    assert provider_from_env({"OTEL_TRACES_EXPORTER": "none,console"}) is None, "none among them: off"
    named = provider_from_env({"OTEL_TRACES_EXPORTER": "console",
                               "OTEL_RESOURCE_ATTRIBUTES": "service.name=svc-from-attrs,deployment.environment=prod"})
    assert named is not None
    assert (named.resource.attributes["service.name"], named.resource.attributes["deployment.environment"]) == (
        "svc-from-attrs", "prod")
    named.shutdown()
    both = provider_from_env({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "gw-1",
                              "OTEL_RESOURCE_ATTRIBUTES": "service.name=svc-from-attrs"})
    assert both is not None and both.resource.attributes["service.name"] == "gw-1"
    both.shutdown()
    plain = provider_from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert plain is not None and plain.resource.attributes["service.name"] == "anss-gateway"
    plain.shutdown()
