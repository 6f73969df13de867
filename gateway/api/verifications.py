"""``POST /v1/verifications``: authenticate, parse, authorise, federate, evaluate, answer."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp import web

from connectors.base import CallContext
from gateway import checks as check_rules
from gateway.api.validation import parse_json
from gateway.auth import Caller, authenticate, single_authorization
from gateway.consent import enforce_consent
from gateway.errors import (
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    TooManyRequests,
    Unauthenticated,
)
from gateway.federation import Subject
from gateway.officers import DATA, authenticated_as, require_role
from gateway.outbound import OutboundSigner
from gateway.policy import apply_masks, authorise
from gateway.ratelimit import Limit
from gateway.ratelimit import headers as rate_headers
from gateway.state import AUDIT_NOTE, REQUEST_BODY, REQUEST_ID, RUNTIME, AuditNote, Runtime
from gateway.tls import check_binding

log = structlog.get_logger(__name__)


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body may hold at most {limit} bytes")
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()  # the whole body, however it was split; capped by client_max_size
    except TimeoutError as exc:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s") from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"the body may hold at most {limit} bytes") from exc


async def admit(runtime: Runtime, caller: Caller, leeway_s: int) -> None:
    """Once per assertion (replay cache, fail closed), within the client's rate limit (fail open)."""
    try:
        first = await runtime.replay.first_use(caller.client_id, caller.jti, caller.expires_at + leeway_s)
    except Exception as exc:
        log.error("replay_cache_unavailable", error=type(exc).__name__)
        raise ServiceUnavailable("replay protection is unavailable, so nothing is answered") from exc
    if not first:
        raise Unauthenticated("this client assertion was already used; sign a new one", "assertion_replayed")
    client = runtime.settings.clients[caller.client_id]
    bucket = client.rate_limit or runtime.settings.default_rate_limit
    try:
        decision = await runtime.limiter.take(caller.client_id, Limit(bucket.rate_per_s, bucket.burst))
    except Exception as exc:  # an unreachable limiter must not stop the social-protection service
        log.error("rate_limiter_unavailable", error=type(exc).__name__)
        return
    if not decision.allowed:
        raise TooManyRequests(f"at most {bucket.burst} requests at once and {bucket.rate_per_s:g}/s; "
                              "retry after the delay given", headers=rate_headers(decision))


async def create_verification(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    note: AuditNote = request[AUDIT_NOTE]
    body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
    request[REQUEST_BODY] = body
    note.request_sha256 = hashlib.sha256(body).hexdigest()

    caller = authenticate(
        single_authorization(request.headers.getall("Authorization", [])), request.method, request.path_qs, body,
        settings.gateway_id, settings.clients, runtime.client_keys, settings.clock_leeway_s,
    )
    note.client = caller.client_id
    note.detail["jti"] = caller.jti
    authenticated_as(request, caller.client_id)
    check_binding(request, caller.client_id)  # with mutual TLS, the token's client is the certificate's
    await admit(runtime, caller, settings.clock_leeway_s)
    require_role(request, DATA)  # officers read the log; they never query citizen data

    payload = parse_json(body, request.content_type, "verification-request.json")
    note.purpose, note.case_ref = payload["purpose"], payload["case_ref"]
    subject_in: dict[str, str] = payload["subject"]
    kind, value = next(iter(subject_in.items()))
    note.subject = runtime.pseudonymiser.pseudonym(kind, value)

    decision = authorise(settings, caller.client_id, payload["purpose"], payload.get("checks"))
    checks = decision.checks
    note.checks = checks
    note.detail["decision"] = decision.reason
    purpose = settings.purposes[payload["purpose"]]
    note.legal_basis = purpose.statute if purpose.legal_basis == "statute" else "consent"
    await enforce_consent(runtime, note, caller.client_id, purpose, subject_in, checks)  # before any source

    ctx = CallContext(
        session=runtime.session,
        sign=OutboundSigner(runtime.signing_key, settings.gateway_id, caller.client_id, payload["purpose"]),
        request_id=request[REQUEST_ID],
        client_id=caller.client_id,
        purpose=payload["purpose"],
    )
    today = datetime.now(UTC).date()
    evidence = await runtime.federation.gather(Subject(**subject_in), checks, ctx, today)
    if evidence.subject_idcs and kind != "idcs":
        note.subject = runtime.pseudonymiser.pseudonym("idcs", evidence.subject_idcs)
    sources = evidence.sources()
    note.sources = tuple((s["name"], s["status"]) for s in sources)
    if evidence.subject_unknown:
        raise NotFound("the civil registry does not know this subject", "subject_not_found")
    results = check_rules.evaluate(checks, evidence)
    withheld = apply_masks(results, decision.withheld, today)
    if withheld:
        note.detail["withheld"] = withheld
    complete = all(r["status"] == "verified" for r in results.values())
    note.outcome = "answered" if complete else "partial"
    document: dict[str, Any] = {
        "request_id": request[REQUEST_ID],
        "subject": {"idcs": evidence.subject_idcs} if evidence.subject_idcs else subject_in,
        "purpose": payload["purpose"],
        "legal_basis": note.legal_basis,
        "case_ref": payload["case_ref"],
        "checked_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "complete": complete,
        "checks": results,
        "sources": sources,
    }
    return web.Response(body=orjson.dumps(document), content_type="application/json")
