"""OpenTelemetry traces, off by default: configured by the standard ``OTEL_*`` variables.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp`` over HTTP/protobuf, configured by
``OTEL_EXPORTER_OTLP_ENDPOINT``/``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``…_HEADERS`` and the rest; or
``console``) and ``OTEL_SDK_DISABLED`` is not ``true``; ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
describe the service. The OpenTelemetry aiohttp server and client instrumentations make a server span per
request and a client span per HTTP call; the gateway adds one span per administration call
(``"<source> <operation>"``). Each request starts a trace of its own: a client's ``traceparent``, ``tracestate``
and ``baggage`` are not read (a client could otherwise switch the gateway's tracing of its requests off with a
"not sampled" flag, or put any text in ``tracestate`` for the gateway to pass on), and only the gateway's own
``traceparent`` is sent to the administrations (W3C trace context: no ``tracestate``, no ``baggage``).
``OTEL_TRACES_EXPORTER`` is read case-insensitively; ``none`` among its values turns tracing off; a name this
gateway does not ship stops the start (``ConfigError``) rather than tracing into nowhere. ``service.name`` is
``OTEL_SERVICE_NAME``, else the one in ``OTEL_RESOURCE_ATTRIBUTES``, else ``anss-gateway``.

No span carries personal data: span names are route templates and ``source operation`` pairs, and a span
processor rewrites every URL attribute before it is recorded — the query string is dropped and path segments
holding four digits or more, or a long hexadecimal id (an IDCS in ``/massar/v1/pupils/{idcs}/enrolment``, a
consent id), become ``{id}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.config.toml import ConfigError

URL_ATTRIBUTES = ("url.full", "http.url", "http.target", "url.path", "url.query")
# a segment with a run of 4 digits or more (an IDCS, a CIN, an entry index), or a long hex/uuid (a consent id)
_IDENTIFYING_SEGMENT = re.compile(r".*[0-9]{4,}.*|[0-9a-fA-F-]{16,}")


def scrub_url(value: str) -> str:
    """A URL or path without its query, and with every path segment that could identify someone replaced."""
    parts = urlsplit(value)
    path = "/".join("{id}" if _IDENTIFYING_SEGMENT.fullmatch(segment) else segment
                    for segment in parts.path.split("/"))
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class ScrubbingProcessor(SpanProcessor):
    """Rewrites URL attributes as spans start (they are set at creation by the instrumentations)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attributes = span.attributes or {}
        for key in URL_ATTRIBUTES:
            value = attributes.get(key)
            if isinstance(value, str):
                span.set_attribute(key, "" if key == "url.query" else scrub_url(value))

    def on_end(self, span: ReadableSpan) -> None:
        return None


class OwnTraceparent(TextMapPropagator):
    """W3C trace context one way: nothing is read from a request (each starts its own trace), and only
    ``traceparent`` is written on the calls to the administrations."""

    _w3c = TraceContextTextMapPropagator()

    def extract(self, carrier: Any, context: Context | None = None, getter: Any = None) -> Context:
        return context if context is not None else Context()

    def inject(self, carrier: Any, context: Context | None = None, setter: Any = None) -> None:
        headers: dict[str, str] = {}
        self._w3c.inject(headers, context)
        if "traceparent" in headers:
            if setter is None:
                carrier["traceparent"] = headers["traceparent"]
            else:
                setter.set(carrier, "traceparent", headers["traceparent"])

    @property
    def fields(self) -> set[str]:
        return {"traceparent"}


def _resource(env: Mapping[str, str]) -> Resource:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``key=value`` pairs, values percent-encoded) as the SDK reads it, and
    ``service.name``: ``OTEL_SERVICE_NAME``, else the attributes', else ``anss-gateway``."""
    attributes: dict[str, str] = {}
    for part in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = unquote(value.strip())
    attributes["service.name"] = env.get("OTEL_SERVICE_NAME") or attributes.get("service.name") or "anss-gateway"
    return Resource.create(attributes)


def provider_from_env(env: Mapping[str, str], exporter: SpanExporter | None = None) -> TracerProvider | None:
    """The tracer provider the environment asks for, or None (tracing off). ``exporter`` (tests) replaces the
    configured ones."""
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if exporter is None and (env.get("OTEL_SDK_DISABLED", "").lower() == "true" or not names or "none" in names):
        return None
    provider = TracerProvider(resource=_resource(env))
    provider.add_span_processor(ScrubbingProcessor())
    exporters: list[Any] = [exporter] if exporter is not None else []
    for name in names if exporter is None else []:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            raise ConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}; this gateway ships otlp, console "
                              "and none")
    for chosen in exporters:
        provider.add_span_processor(BatchSpanProcessor(chosen))
    propagate.set_global_textmap(OwnTraceparent())  # nothing read from clients; only traceparent goes out
    return provider


def server_middleware(provider: TracerProvider) -> Any:
    """The aiohttp server instrumentation's middleware, for this application only.

    The instrumentor's own ``instrument()`` replaces ``aiohttp.web.Application`` for the whole process (every
    application created afterwards, simulators included, would be traced); it is run once here only for the
    module state its middleware needs (excluded URLs, semantic-convention mode, instruments), and undone at once."""
    from opentelemetry.instrumentation import aiohttp_server

    if aiohttp_server.active_requests_counter is None:
        instrumentor = aiohttp_server.AioHttpServerInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        instrumentor.uninstrument()
    return aiohttp_server.create_aiohttp_middleware(tracer_provider=provider)


def client_trace_config(provider: TracerProvider) -> Any:
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    def url_filter(url: Any) -> str:
        return scrub_url(str(url))

    return create_trace_config(url_filter=url_filter, tracer_provider=provider)
