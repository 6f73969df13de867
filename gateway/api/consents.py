"""``/v1/consents``: record, list, show and revoke citizens' consents (clients that manage consents only).

Same trust path as a verification — a signed client assertion, once, within the rate limit — then the
caller must manage consents for the purpose concerned (``rules.require_manager``), else 403. A consent of a
purpose the caller does not manage is not disclosed: it is listed by no one else and shown as 404. Every
request is one access-log entry (the pipeline writes it) with the client, purpose, subject pseudonym,
outcome (``consent_granted``, ``consent_revoked``, ``consent_already_revoked``, ``consent_shown``,
``consents_listed``) and ``consent_id``; the identifier, the evidence text and the reason never go there.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import structlog
from aiohttp import web

from gateway.api.caller import signed_request
from gateway.api.validation import parse_json
from gateway.errors import BadRequest, NotFound, ServiceUnavailable
from gateway.policy.consent.rules import CONSENT_ID, IDCS, grant_for, parse_time, require_manager
from gateway.policy.consent.store import Consent, check_reason
from gateway.trust.roles import DATA
from gateway.web.state import REQUEST_ID, AuditNote, Runtime

log = structlog.get_logger(__name__)
T = TypeVar("T")


async def _registry(call: Awaitable[T]) -> T:
    """A consent-store call; a store that cannot answer is a 503 (never a half-done answer)."""
    try:
        return await call
    except Exception as exc:
        log.error("consent_store_unavailable", error=type(exc).__name__)
        raise ServiceUnavailable("the consent registry is unavailable, so nothing is answered") from exc


async def _caller(request: web.Request) -> tuple[Runtime, AuditNote, frozenset[str], bytes]:
    """Authenticate and admit the request; the purposes whose consents the caller manages (403 if none)."""
    signed = await signed_request(request, DATA)  # officers never manage consents
    return signed.runtime, signed.note, require_manager(signed.runtime.settings, signed.caller.client_id), signed.body


def _describe(note: AuditNote, consent: Consent) -> None:
    note.purpose, note.subject, note.checks = consent.purpose, consent.citizen, consent.checks
    note.consent_id = consent.consent_id
    note.legal_basis = "consent"


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json",
                        headers=headers)


async def _managed_consent(runtime: Runtime, consent_id: str, managed: frozenset[str]) -> Consent:
    consent = await _registry(runtime.consents.get(consent_id)) if CONSENT_ID.fullmatch(consent_id) else None
    if consent is None or consent.purpose not in managed:
        raise NotFound("no such consent")
    return consent


async def grant_consent(request: web.Request) -> web.Response:
    runtime, note, managed, body = await _caller(request)
    payload = parse_json(body, request.content_type, "consent-request.json", runtime.settings.checks)
    note.purpose, note.checks = payload["purpose"], tuple(payload["checks"])
    citizen = runtime.pseudonymiser.pseudonym("idcs", payload["subject"]["idcs"])
    note.subject = citizen
    grant = grant_for(
        runtime.settings, citizen=citizen, grantee=payload["grantee"], purpose=payload["purpose"],
        checks=payload["checks"],
        valid_from=parse_time(payload["valid_from"], "valid_from") if "valid_from" in payload else None,
        valid_until=parse_time(payload["valid_until"], "valid_until"), evidence=payload["evidence"],
        granted_by=str(note.client), managed=managed, request_id=request[REQUEST_ID],
    )
    consent = await _registry(runtime.consents.grant(grant))
    _describe(note, consent)
    note.outcome = "consent_granted"
    note.detail["grantee"] = consent.grantee
    return _json(consent.document(datetime.now(UTC)), 201, {"Location": f"/v1/consents/{consent.consent_id}"})


async def list_consents(request: web.Request) -> web.Response:
    runtime, note, managed, _ = await _caller(request)
    if set(request.query) != {"idcs"} or len(request.query.getall("idcs")) != 1:
        raise BadRequest("give exactly one query parameter: idcs")
    if not IDCS.fullmatch(request.query["idcs"]):
        raise BadRequest("idcs: has an invalid format")
    citizen = runtime.pseudonymiser.pseudonym("idcs", request.query["idcs"])
    note.subject = citizen
    consents = [c for c in await _registry(runtime.consents.list_for(citizen)) if c.purpose in managed]
    note.outcome = "consents_listed"
    note.detail["count"] = len(consents)
    now = datetime.now(UTC)
    return _json({"consents": [c.document(now) for c in consents]})


async def show_consent(request: web.Request) -> web.Response:
    runtime, note, managed, _ = await _caller(request)
    consent = await _managed_consent(runtime, request.match_info["consent_id"], managed)
    _describe(note, consent)
    note.outcome = "consent_shown"
    return _json(consent.document(datetime.now(UTC)))


async def revoke_consent(request: web.Request) -> web.Response:
    runtime, note, managed, body = await _caller(request)
    payload = parse_json(body, request.content_type, "consent-revocation.json", runtime.settings.checks)
    try:
        reason = check_reason(payload["reason"])
    except ValueError as exc:
        raise BadRequest(f"/reason: {exc}") from exc
    consent = await _managed_consent(runtime, request.match_info["consent_id"], managed)
    _describe(note, consent)
    revocation = await _registry(runtime.consents.revoke(consent.consent_id, reason, str(note.client)))
    if revocation is None:  # cannot happen: consents are never deleted
        raise NotFound("no such consent")
    note.outcome = "consent_revoked" if revocation.changed else "consent_already_revoked"
    return _json(revocation.consent.document(datetime.now(UTC)))
