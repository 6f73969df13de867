"""Unauthenticated resources: ``/healthz`` (alive), ``/readyz`` (ready to serve, or degraded below the log's
free-space floor; each administration's circuit breaker and bulkhead, and how many requests the HTTP parser
refused since start: ``unparsable_requests``, see gateway/web/protocol.py), the JWKS, and the contract's
documents (``/schemas/{name}``, with this gateway's check vocabulary)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from connectors.resilience import Resilient
from gateway.api import contract
from gateway.crypto import keys
from gateway.errors import NotFound
from gateway.web.protocol import PARSER_REFUSALS
from gateway.web.state import RUNTIME, SETTINGS


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps({"status": "alive"}), content_type="application/json")


APPEND_FAILURE_HOLD_S = 10.0  # then ready again, so traffic (the only writer) can find the log writable again


async def readyz(request: web.Request) -> web.Response:
    """Ready when the key, the access log and the connectors are; ``degraded`` (still 200) while the log's disk
    is below its free-space floor (``gateway.stores.space``)."""
    runtime = request.app.get(RUNTIME)
    checks: dict[str, bool] = {"keys": False, "store": False, "connectors": False}
    low = False
    if runtime is not None:
        checks["keys"] = runtime.signing_key is not None
        health = runtime.log_health
        if health is None or health.available:  # a store known to be away is not asked (it would make us wait)
            try:
                await runtime.access_log.count()
                checks["store"] = runtime.log_guard is None or runtime.log_guard.corrupt is None  # access_log_corrupt
            except Exception:
                checks["store"] = False
        failed_at = runtime.append_failed_at  # the log reads but an entry could not be written: not ready for a while
        if failed_at is not None and time.monotonic() - failed_at < APPEND_FAILURE_HOLD_S:
            checks["store"] = False
        checks["connectors"] = bool(runtime.federation.connectors) and not runtime.session.closed
        if runtime.free_space is not None:
            low = runtime.free_space.low
    ready = all(checks.values())
    checks["free_space"] = not low
    status = "not_ready" if not ready else "degraded" if low else "ready"
    document: dict[str, Any] = {"status": status, "checks": checks}
    if runtime is not None:  # an open breaker is not "not ready": the other sources still answer
        document["sources"] = {name: c.snapshot() for name, c in sorted(runtime.federation.connectors.items())
                               if isinstance(c, Resilient)}
    refusals = request.app.get(PARSER_REFUSALS)
    document["unparsable_requests"] = refusals.total if refusals is not None else 0
    return web.Response(
        body=orjson.dumps(document),
        status=200 if ready else 503,
        content_type="application/json",
    )


async def jwks(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    return web.Response(
        body=orjson.dumps(keys.jwks(runtime.published_keys)),
        content_type="application/jwk-set+json",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def schema(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in contract.PUBLISHED:
        raise NotFound("no such document")
    return web.Response(body=contract.body(name, request.app[SETTINGS].checks), content_type="application/json",
                        headers={"Cache-Control": "public, max-age=300"})
