"""The application factory: builds the aiohttp app from a ``Settings`` object.

Every request goes through one middleware pipeline of small steps::

    bind request id ─► handler ─► (error → problem+json) ─► access log entry ─► sign the exact body ─► send

The access-log step runs before anything is sent: if the entry cannot be written, the answer is replaced
by a 503 problem and no data leaves the gateway. While the log's store knows its database is away
(``gateway.audit.health``), logged requests are refused with that 503 at once, before their handler runs.
A refusal of a request nobody was established for, beyond the address's budget, is answered 429
``too_many_refusals`` and counted rather than logged one by one (``gateway.trust.refusals``).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, nullcontext, suppress
from datetime import UTC, datetime

import structlog
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider

from connectors.base import Connector
from connectors.resilience import Resilient
from connectors.transport import backend_session
from gateway import background, console
from gateway.api import anomalies, audit, batches, citizen, consents, public, services, verifications
from gateway.api import log as log_api
from gateway.audit import AccessLogCorrupt, AccessRecord, Pseudonymiser, TreeHeadSigner, log_id_for
from gateway.audit.record import CITIZEN_ACTOR
from gateway.audit.witness.guard import log_guard
from gateway.batch.service import BatchService, batch_engine, batch_store
from gateway.config.connectors import build_connectors
from gateway.config.settings import Settings
from gateway.crypto.jws import SIGNATURE_HEADER, request_digest, sign_detached
from gateway.crypto.keyring import GatewaySigningKeys, ResolverChain, StaticClientKeys
from gateway.errors import (
    PROBLEM_CONTENT_TYPE,
    BadRequest,
    GatewayError,
    HeadersTooLarge,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    problem_body,
)
from gateway.federation.executor import Federation
from gateway.federation.services import ServiceCatalogue, check_service_masks
from gateway.stores import backends as storage
from gateway.stores.space import FreeSpaceWatch
from gateway.trust import ratelimit
from gateway.trust.backoff import LocalSignInThrottle, RedisSignInThrottle, SignInThrottle
from gateway.trust.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from gateway.trust.refusals import RefusalBudget
from gateway.trust.replay import RedisReplayCache, ReplayCache, SqliteReplayCache
from gateway.web import logs
from gateway.web.checkpoint import BEACON, CheckpointBeacon
from gateway.web.checkpoint import add_header as add_checkpoint_header
from gateway.web.metrics import Metrics, route_of
from gateway.web.metrics import handler as metrics_handler
from gateway.web.protocol import PARSER_REFUSALS, REFUSAL_SIGNER, ParserRefusals, RefusalSigner
from gateway.web.state import (
    AUDIT_NOTE,
    BATCHES,
    METRICS,
    PROBLEM_CODE,
    REQUEST_BODY,
    REQUEST_ID,
    RUNTIME,
    SERVICES,
    SETTINGS,
    AuditNote,
    Runtime,
)
from gateway.web.tracing import client_trace_config, server_middleware
from gateway.web.tracing import provider_from_env as tracing_from_env

log = structlog.get_logger("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNLOGGED_PATHS = frozenset({"/healthz", "/readyz", "/.well-known/jwks.json", "/metrics"})
SCHEMA_PATHS = "/schemas/"  # the published contract: public documents, not recorded either
UNLOGGED_PREFIXES = (SCHEMA_PATHS, log_api.PREFIX)  # and the log's own checkpoint and proofs (hashes only)


def _as_gateway_error(exc: BaseException) -> GatewayError:
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, web.HTTPException):
        if exc.status == 404:
            return NotFound("no such resource")
        if exc.status == 405:
            allow = exc.headers.get("Allow")
            return MethodNotAllowed("this method is not allowed on this resource",
                                    headers={"Allow": allow} if allow else None)
        if exc.status == 413:
            return PayloadTooLarge("the body is too large")
        if 400 <= exc.status < 500:
            return BadRequest("the request is malformed")
    log.error("unhandled_error", exc_info=exc)
    return InternalError("the gateway could not process the request")


def _problem_response(error: GatewayError, request_id: str) -> web.Response:
    return web.Response(body=problem_body(error, request_id), status=error.status,
                        content_type=PROBLEM_CONTENT_TYPE, headers=error.headers)


def _sent_body(request: web.Request, response: web.Response) -> bytes:
    """The body the client receives, which the signature and the log's digest cover: a HEAD answer has the GET's
    headers and no body."""
    return response.body if isinstance(response.body, bytes) and request.method != "HEAD" else b""


async def _append_access_record(request: web.Request, response: web.Response, started: float) -> None:
    runtime = request.app[RUNTIME]
    note: AuditNote = request[AUDIT_NOTE]
    body = _sent_body(request, response)
    outcome = note.outcome
    if response.status >= 400:
        outcome = request.get(PROBLEM_CODE) or f"http_{response.status}"
    record = AccessRecord(
        time=note.time or datetime.now(UTC).isoformat(timespec="microseconds"),
        request_id=request[REQUEST_ID],
        method=request.method,
        path=request.path,
        status=response.status,
        outcome=outcome or "answered",
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        client=note.client,
        purpose=note.purpose,
        legal_basis=note.legal_basis,
        case_ref=note.case_ref,
        checks=note.checks,
        subject=note.subject,
        sources=note.sources,
        request_hmac=note.request_hmac,
        response_hmac=runtime.pseudonymiser.body_digest(body),
        detail=note.detail,
        consent_id=note.consent_id,
        co_subjects=note.co_subjects,
    )
    appending = time.perf_counter()
    await runtime.access_log.append(record)
    request.app[METRICS].append_latency.observe(time.perf_counter() - appending)


def _check_header_sizes(request: web.Request, limit: int) -> None:
    for name, value in request.headers.items():
        if len(value) > limit:
            raise HeadersTooLarge(f"the {name} header is larger than {limit} bytes")


def _anonymous(note: AuditNote) -> bool:
    """Nobody was established for this request: no client (no valid assertion, no session), or a citizen whose
    token did not verify."""
    return note.client is None or (note.client == CITIZEN_ACTOR and note.subject is None)


async def _counted_instead(request: web.Request, response: web.Response, runtime: Runtime,
                           request_id: str) -> web.Response | None:
    """For an anonymous refusal beyond its address's budget: the 429 that replaces it (the refusal is counted,
    not logged one by one); ``None`` when it is logged as usual."""
    if runtime.refusals is None or response.status < 400 or not _anonymous(request[AUDIT_NOTE]):
        return None
    code = request.get(PROBLEM_CODE) or f"http_{response.status}"
    verdict = await runtime.refusals.admit(request.remote, code)
    if verdict.logged:
        return None
    retry_s = max(math.ceil(verdict.retry_after_s), 1)
    fields = ratelimit.headers(verdict.decision) if verdict.decision is not None else {}
    held = await runtime.refusals.hold()  # a flooder waits for its answer, at no cost to anyone else
    counted = _problem_response(TooManyRequests(
        "too many refused requests from this address: they are counted, not answered one by one; retry after the "
        "delay given", "too_many_refusals", headers={**fields, "Retry-After": str(retry_s)}), request_id)
    if not held:  # too many held already: this connection is closed after its answer
        counted.force_close()
    return counted


UNAVAILABLE = "the access log cannot record this request"


async def _log_step(request: web.Request, response: web.Response, runtime: Runtime, request_id: str,
                    started: float, refused_as_down: bool) -> tuple[web.Response, bool]:
    """The access-log step: the response to send, and whether it is a refusal counted instead of logged.

    The answer leaves only once its entry is written (else 503 ``audit_unavailable``). While the log's store
    knows its database is away, nothing is tried: the 503 is given at once (also to an answer prepared while it
    went away)."""
    health = runtime.log_health
    if refused_as_down or (health is not None and not health.available):
        if request.get(PROBLEM_CODE) == "audit_unavailable":
            return response, False
        return _problem_response(ServiceUnavailable(UNAVAILABLE, "audit_unavailable"), request_id), False
    counted = await _counted_instead(request, response, runtime, request_id)
    if counted is not None:
        return counted, True
    try:
        await _append_access_record(request, response, started)
    except Exception:
        log.exception("access_log_append_failed")
        runtime.append_failed_at = time.monotonic()
        return _problem_response(ServiceUnavailable(UNAVAILABLE, "audit_unavailable"), request_id), False
    if runtime.append_failed_at is not None:
        runtime.append_failed_at = None
    return response, False


@web.middleware
async def pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
    structlog.contextvars.clear_contextvars()
    request_id = uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    request[AUDIT_NOTE] = AuditNote()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    runtime = request.app.get(RUNTIME)
    path = request.path
    logged = runtime is not None and path not in UNLOGGED_PATHS and not path.startswith(UNLOGGED_PREFIXES)
    log_down = logged and runtime is not None and runtime.log_health is not None and not runtime.log_health.available
    corrupt = runtime is not None and runtime.log_guard is not None and runtime.log_guard.corrupt is not None
    try:
        if log_down:  # nothing could be logged: refuse before anything is done (and anyone asked)
            raise ServiceUnavailable(UNAVAILABLE, "audit_unavailable")
        _check_header_sizes(request, request.app[SETTINGS].max_header_bytes)
        if corrupt and logged:
            raise ServiceUnavailable("the access log is behind or diverges from its high-water checkpoint: "
                                     "nothing is answered", "access_log_corrupt")
        response = await handler(request)
        if not isinstance(response, web.Response):
            raise InternalError("streaming responses are not signed")
    except Exception as exc:
        error = _as_gateway_error(exc)
        response = _problem_response(error, request_id)
        request[PROBLEM_CODE] = error.code
        request[AUDIT_NOTE].detail["reason"] = error.detail  # every refusal is logged with its reason

    counted = False
    if logged and runtime is not None and not corrupt:
        response, counted = await _log_step(request, response, runtime, request_id, started, log_down)
    body = _sent_body(request, response)
    if runtime is not None:
        question = request_digest(str(request[AUDIT_NOTE].detail.get("jti", "")), request.get(REQUEST_BODY, b""))
        response.headers[SIGNATURE_HEADER] = sign_detached(runtime.signing_key, body, request_id,
                                                           request_sha256=question)
    response.headers["X-Request-Id"] = request_id
    request.app[METRICS].request(route_of(request), request.method, response.status, time.perf_counter() - started)
    if not counted:  # a counted refusal gets no line of its own either: its counter's entry is logged
        log.info("request", method=request.method, path=request.path, status=response.status,
                 latency_ms=round((time.perf_counter() - started) * 1000, 2))
    return response


def _refusal_signer(app: web.Application) -> RefusalSigner:
    """Signs a parser refusal with the current key; no request was read, so its question is empty."""
    question = request_digest("", b"")

    def sign(body: bytes, request_id: str) -> str:
        return sign_detached(app[RUNTIME].signing_key, body, request_id, request_sha256=question)

    return sign


def _replay_cache(settings: Settings) -> ReplayCache:
    if settings.replay_backend == "redis":
        return RedisReplayCache(settings.redis_url, settings.replay_redis_prefix, leeway_s=settings.clock_leeway_s)
    return SqliteReplayCache(settings.replay_database or settings.state_dir / "replay.sqlite3",
                             leeway_s=settings.clock_leeway_s)


def _rate_limiter(settings: Settings) -> RateLimiter:
    return RedisRateLimiter(settings.redis_url) if settings.rate_limit_backend == "redis" else LocalRateLimiter()


def _sign_in_throttle(settings: Settings) -> SignInThrottle:
    if settings.rate_limit_backend == "redis":
        return RedisSignInThrottle(settings.redis_url)
    return LocalSignInThrottle(max_buckets=settings.console.login_max_buckets)


def _tree_head_signer(runtime: Runtime) -> TreeHeadSigner:
    """Signs the access log's tree heads with the current signing key (rotations included) on the configured
    cadence, prunes per retention, and signs a last head on the way out (docs/merkle-log.md section 5)."""
    s = runtime.settings
    return TreeHeadSigner(runtime.access_log, lambda: runtime.signing_key, log_id_for(s.gateway_id),
                          interval_s=s.tree_head_interval_s, max_entries=s.tree_head_max_entries,
                          retention_days=s.audit_retention_days, guard=runtime.log_guard)


@asynccontextmanager
async def _refusal_counters(runtime: Runtime) -> AsyncIterator[None]:
    """Writes the counters of anonymous refusals as each window ends, and the last ones on the way out (before
    the last tree head is signed)."""
    budget = runtime.refusals
    if budget is None:
        yield
        return

    async def flushing() -> None:
        window_s = budget.settings.window_s
        while True:
            await asyncio.sleep(window_s - time.time() % window_s + 0.01)  # just after the window's end
            await budget.flush(runtime.access_log.append)

    task = asyncio.create_task(flushing(), name="refusal-counters")
    try:
        yield
    finally:
        await background.stop(task)
        await budget.flush(runtime.access_log.append, everything=True)


def _runtime_context(settings: Settings, connectors: Mapping[str, Connector], tracing: TracerProvider | None = None
                     ) -> Callable[[web.Application], AsyncIterator[None]]:
    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        signing_keys = GatewaySigningKeys(settings)
        signing_key, published_keys = signing_keys.load()
        access_log = storage.access_log(settings)  # [storage]: SQLite files, or PostgreSQL shared by replicas
        await access_log.open()
        replay = _replay_cache(settings)
        try:
            await replay.open()
        except Exception as exc:  # e.g. Redis not up yet: start anyway, refuse requests until it is (503)
            log.error("replay_cache_unavailable_at_start", backend=settings.replay_backend, error=type(exc).__name__)
        limiter = _rate_limiter(settings)
        sign_in_throttle = _sign_in_throttle(settings)
        consent_store = storage.consent_store(settings)
        await consent_store.open()
        pseudonymiser = Pseudonymiser.load(settings.pseudonym_key_file, settings.state_dir)
        session = backend_session([client_trace_config(tracing)] if tracing is not None else None)
        guard = log_guard(settings, access_log, session)
        with suppress(AccessLogCorrupt):  # logged at critical level; every request is then refused (503)
            await guard.check()
        beacon = app[BEACON]  # the Log-Checkpoint header: the log's latest checkpoint, else the high water
        guard.on_checkpoint.append(beacon.offer)
        with suppress(Exception):  # (a database away at start: the beacon's refresh finds it later)
            beacon.offer(await access_log.checkpoint())
        with suppress(AccessLogCorrupt):  # (already found by guard.check above)
            held = await guard.latest()
            beacon.offer(held[1] if held is not None else None)
        app[RUNTIME] = Runtime(
            settings=settings,
            signing_key=signing_key,
            published_keys=published_keys,
            client_keys=ResolverChain((StaticClientKeys.from_settings(settings),)),
            access_log=access_log,
            pseudonymiser=pseudonymiser,
            session=session,
            federation=Federation(connectors, settings.checks),
            replay=replay,
            limiter=limiter,
            sign_in_throttle=sign_in_throttle,
            consents=consent_store,
            refusals=RefusalBudget(settings.refusals, lambda address: pseudonymiser.pseudonym("address", address)),
            free_space=FreeSpaceWatch(settings.state_dir if storage.uses_postgres(settings)
                                      else settings.audit_database.parent,
                                      settings.refusals.free_space_floor_bytes, settings.refusals.free_space_check_s),
            metrics=app[METRICS],
            log_guard=guard,
        )
        b = settings.batches
        batch_records = batch_store(settings)  # [storage]: SQLite (one machine) or PostgreSQL (any number)
        await batch_records.open()
        engine = batch_engine(app[RUNTIME], batch_records)
        app[BATCHES] = BatchService(batch_records, engine, b.chunk_size, b.max_subjects, b.max_upload_bytes,
                                     b.stalled_after_s)
        log.info("gateway_ready", gateway_id=settings.gateway_id, kid=signing_key.kid,
                 connectors=sorted(connectors))
        runtime = app[RUNTIME]
        async with (signing_keys.kept_current(runtime),  # follows `keys rotate` without a restart
                    _tree_head_signer(runtime).running(),
                    engine.running(),  # batches resume where a previous process left them (or its workers run)
                    _refusal_counters(runtime),
                    beacon.following(access_log),  # replicas that do not sign find the signer's checkpoints
                    runtime.free_space.running() if runtime.free_space else nullcontext()):
            yield
        await batch_records.close()
        for c in connectors.values():
            await c.aclose()
        await session.close()
        await limiter.close()
        await sign_in_throttle.close()
        with suppress(Exception):
            await replay.close()
        await consent_store.close()
        if runtime.refusals is not None:
            await runtime.refusals.close()
        await guard.archive.close()
        await access_log.close()

    return runtime_ctx


async def _plain_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp says ``Python/x aiohttp/y``; naming versions only helps a scanner, so say what answers."""
    response.headers["Server"] = "anss-gateway"


def create_app(settings: Settings, tracer_provider: TracerProvider | None = None) -> web.Application:
    """The gateway application. Traces follow the ``OTEL_*`` variables (off by default) unless a
    ``tracer_provider`` is given (tests: an in-memory exporter)."""
    if not structlog.is_configured():  # an embedding program gets our JSON logs, never dev tracebacks with locals
        logs.configure()
    tracing = tracer_provider if tracer_provider is not None else tracing_from_env(os.environ)
    app = web.Application(
        middlewares=[*([server_middleware(tracing)] if tracing is not None else []), pipeline],
        client_max_size=max(settings.max_body_bytes, settings.batches.max_upload_bytes),  # per route: read_body
        handler_args={
            # our own limit (431, logged) is max_header_bytes; the parser's is larger so ours speaks first
            "max_field_size": max(16384, settings.max_header_bytes * 2),
            "max_headers": 64,
            # a connection that does not complete a request head in time is closed (slow senders)
            "keepalive_timeout": settings.idle_timeout_s,
        },
    )
    app[SETTINGS] = settings
    app[PARSER_REFUSALS] = ParserRefusals()  # what GatewayRunner's connections count (shown by /readyz)
    app[REFUSAL_SIGNER] = _refusal_signer(app)  # and how they sign their answers
    app.on_response_prepare.append(_plain_server_header)
    app[BEACON] = CheckpointBeacon()
    app.on_response_prepare.append(add_checkpoint_header)  # Log-Checkpoint on every answer
    app.cleanup_ctx.append(citizen.context(settings))  # the citizens' identity provider keys: checked first
    # built here, before start-up: a mistake in an administration's file is one ConfigError line, not a traceback
    connectors = build_connectors(settings.connectors, settings.root)
    app[SERVICES] = ServiceCatalogue.build(settings.services, connectors, settings.config_dir / "services.toml")
    check_service_masks(settings, app[SERVICES])
    app[METRICS] = Metrics()
    app[METRICS].watch(connectors)
    app[METRICS].watch_parser(app[PARSER_REFUSALS].by_status)
    if tracing is not None:
        tracer = tracing.get_tracer("anss_gateway")
        for connector in connectors.values():
            if isinstance(connector, Resilient):
                connector.tracer = tracer
    app.cleanup_ctx.append(_runtime_context(settings, connectors, tracing))
    if tracing is not None and tracer_provider is None:  # ours: its last spans are exported on the way out
        own = tracing

        async def flush_traces(_: web.Application) -> None:
            await asyncio.to_thread(own.shutdown)  # exports over HTTP: not on the event loop
        app.on_cleanup.append(flush_traces)
    app.router.add_get("/healthz", public.healthz)
    app.router.add_get("/readyz", public.readyz)
    app.router.add_get("/.well-known/jwks.json", public.jwks)
    app.router.add_get("/schemas/{name}", public.schema)
    app.router.add_get("/log/checkpoint", log_api.checkpoint)
    app.router.add_get("/log/consistency", log_api.consistency)
    app.router.add_get("/metrics", metrics_handler(app[METRICS]))
    app.router.add_post("/v1/verifications", verifications.create_verification)
    app.router.add_get("/v1/services", services.list_services)
    app.router.add_get("/v1/services/{service}", services.describe_service)
    app.router.add_post("/v1/services/{service}", services.call_service)
    app.router.add_post("/v1/batches", batches.submit_batch)
    app.router.add_get("/v1/batches/{batch_id}", batches.show_batch)
    app.router.add_get("/v1/batches/{batch_id}/results", batches.batch_results)
    app.router.add_post("/v1/batches/{batch_id}/cancel", batches.cancel_batch)
    app.router.add_post("/v1/consents", consents.grant_consent)
    app.router.add_get("/v1/consents", consents.list_consents)
    app.router.add_get("/v1/consents/{consent_id}", consents.show_consent)
    app.router.add_post("/v1/consents/{consent_id}/revoke", consents.revoke_consent)
    app.router.add_get(citizen.PATH, citizen.access_log)
    app.router.add_post("/v1/audit/search", audit.search_entries)  # officers only (gateway/trust/roles.py)
    app.router.add_get(r"/v1/audit/entries/{index}", audit.show_entry)  # a bad index is a 400 (show_entry)
    app.router.add_get("/v1/audit/integrity", audit.integrity)
    app.router.add_post("/v1/audit/verify", audit.verify_now)
    app.router.add_get("/v1/audit/export", audit.export)
    app.router.add_get("/v1/audit/anomalies", anomalies.list_anomalies)
    console.setup(app)  # the officers' console (HTML pages under /console; docs/officers.md)
    return app
