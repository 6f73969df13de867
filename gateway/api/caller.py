"""The trust path every client API request takes before its handler does anything else.

``signed_request`` reads the body (bounded in size and time), checks the client assertion over those exact
bytes, binds it to the mutual-TLS certificate, admits it once (replay cache, fail closed) within the client's
rate limit (fail open), and requires the client's role (``data`` or ``officer``). The access-log note learns
the client, the assertion id and the body digest as soon as they are known, so a refusal at any step is
logged with all that was established before it.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import structlog
from aiohttp import web

from gateway.errors import PayloadTooLarge, RequestTimeout, ServiceUnavailable, TooManyRequests, Unauthenticated
from gateway.trust.assertion import Caller, authenticate, single_authorization
from gateway.trust.ratelimit import Limit
from gateway.trust.ratelimit import headers as rate_headers
from gateway.trust.replay import ReplayHistoryLost
from gateway.trust.roles import Role, authenticated_as, require_role
from gateway.trust.tls import check_binding
from gateway.web.state import AUDIT_NOTE, REQUEST_BODY, RUNTIME, AuditNote, Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SignedRequest:
    """A request whose client assertion verified, admitted once, from a client of the required role."""

    runtime: Runtime
    note: AuditNote
    caller: Caller
    body: bytes


async def signed_request(request: web.Request, role: Role, max_body_bytes: int | None = None) -> SignedRequest:
    """Authenticate and admit ``request``; refuse a client whose role is not ``role`` (403 ``forbidden_role``).
    ``max_body_bytes`` raises the body limit for one resource (a batch upload); else ``max_body_bytes``."""
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    note: AuditNote = request[AUDIT_NOTE]
    body = await read_body(request, max_body_bytes or settings.max_body_bytes, settings.body_timeout_s)
    request[REQUEST_BODY] = body
    note.request_hmac = runtime.pseudonymiser.body_digest(body)
    caller = authenticate(
        single_authorization(request.headers.getall("Authorization", [])), request.method, request.path_qs, body,
        settings.gateway_id, settings.clients, runtime.client_keys, settings.clock_leeway_s, request.raw_path,
    )
    note.client = caller.client_id
    note.detail["jti"] = caller.jti
    authenticated_as(request, caller.client_id)
    check_binding(request, caller.client_id)  # with mutual TLS, the token's client is the certificate's
    await admit(runtime, caller, settings.clock_leeway_s)
    require_role(request, role)
    return SignedRequest(runtime, note, caller, body)


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body may hold at most {limit} bytes")
    try:
        async with asyncio.timeout(timeout_s):
            chunks, size = [], 0
            while chunk := await request.content.read(65_536):  # the whole body, however it was split
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the body may hold at most {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except TimeoutError as exc:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s") from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"the body may hold at most {limit} bytes") from exc


async def admit(runtime: Runtime, caller: Caller, leeway_s: int) -> None:
    """Once per assertion (replay cache, fail closed), within the client's rate limit (fail open)."""
    metrics = runtime.metrics
    try:
        first = await runtime.replay.first_use(caller.client_id, caller.jti, caller.expires_at + leeway_s,
                                               caller.issued_at)
    except ReplayHistoryLost as exc:  # the cache forgot what was used before this assertion was signed
        retry_s = max(1, math.ceil(exc.accept_from - time.time()))
        log.warning("replay_history_lost", epoch=exc.epoch, issued_at=caller.issued_at, retry_after_s=retry_s)
        if metrics is not None:
            metrics.replay.labels("history_lost").inc()
        raise ServiceUnavailable(
            "the replay cache was reset after this assertion was signed, so it cannot tell whether it was "
            "used: it is refused; sign a new one after the delay given", "replay_history_lost",
            headers={"Retry-After": str(retry_s)},
        ) from exc
    except Exception as exc:
        log.error("replay_cache_unavailable", error=type(exc).__name__)
        if metrics is not None:
            metrics.replay.labels("unavailable").inc()
        raise ServiceUnavailable("replay protection is unavailable, so nothing is answered") from exc
    if metrics is not None:
        metrics.replay.labels("first_use" if first else "replayed").inc()
    if not first:
        raise Unauthenticated("this client assertion was already used; sign a new one", "assertion_replayed")
    client = runtime.settings.clients[caller.client_id]
    bucket = client.rate_limit or runtime.settings.default_rate_limit
    try:
        decision = await runtime.limiter.take(caller.client_id, Limit(bucket.rate_per_s, bucket.burst))
    except Exception as exc:  # an unreachable limiter must not stop the social-protection service
        log.error("rate_limiter_unavailable", error=type(exc).__name__)
        if metrics is not None:
            metrics.rate_limit.labels("unavailable").inc()
        return
    if metrics is not None:
        metrics.rate_limit.labels("allowed" if decision.allowed else "limited").inc()
    if not decision.allowed:
        raise TooManyRequests(f"at most {bucket.burst} requests at once and {bucket.rate_per_s:g}/s; "
                              "retry after the delay given", headers=rate_headers(decision))

