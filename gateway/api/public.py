"""Unauthenticated resources: ``/healthz`` (alive), ``/readyz`` (ready to serve, or degraded, and each
administration's circuit breaker and bulkhead), the JWKS."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from connectors.resilience import Resilient
from gateway.crypto import keys
from gateway.web.state import RUNTIME


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps({"status": "alive"}), content_type="application/json")


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
                checks["store"] = True
            except Exception:
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
