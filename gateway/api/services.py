"""``/v1/services``: partner administrations' services, called through the gateway (docs/services.md).

``GET /v1/services`` lists what the caller may use; ``GET /v1/services/{service}`` describes one as an
OpenAPI 3.1 document; ``POST /v1/services/{service}`` calls it. Same trust path as a verification (signed
assertion, once, within the rate limit; data clients only), then deny by default: a right of the caller for
this service and purpose (else 404 for a service it has no right to, 403 for another purpose), the parameters
checked, the consent enforced for a consent-based purpose — all before the administration is contacted. One
access-log entry per request: the subject is the pseudonym of the person-naming parameters, never a value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from connectors.base import CallContext
from gateway import __version__
from gateway.api.caller import signed_request
from gateway.api.validation import parse_json
from gateway.audit.health import ensure_recordable
from gateway.crypto.outbound import OutboundSigner
from gateway.errors import BadRequest, NotFound, UpstreamError
from gateway.federation import services as service_calls
from gateway.federation.service_openapi import openapi_document
from gateway.federation.services import PublishedService
from gateway.policy.consent import enforce_consent
from gateway.policy.services import authorise_service, mask_record, service_rights
from gateway.trust.roles import DATA
from gateway.web.state import REQUEST_ID, SERVICES, Runtime

SOURCE_STATUS = {"source_timeout": "timeout", "source_rejected": "rejected"}  # as verifications' sources say


def _json(document: Any) -> web.Response:
    return web.Response(body=orjson.dumps(document), content_type="application/json")


def _visible(request: web.Request, runtime: Runtime, client_id: str, name: str) -> PublishedService:
    published = request.app[SERVICES].get(name)
    if published is None or name not in service_rights(runtime.settings, client_id):
        raise NotFound(f"no service {name!r} is available to client {client_id!r}", "service_not_found")
    return published


def _purposes(runtime: Runtime, client_id: str, name: str) -> list[tuple[Any, frozenset[str]]]:
    settings = runtime.settings
    return [(settings.purposes[r.purpose], r.deny) for r in service_rights(settings, client_id).get(name, [])]


def _entry(published: PublishedService, runtime: Runtime, client_id: str) -> dict[str, Any]:
    service, info = published.service, published.info
    params = info.params
    assert params is not None
    purposes = _purposes(runtime, client_id, service.name)
    record_schema = dict(info.record_schema)
    withheld = frozenset().union(*(deny for _, deny in purposes))
    if isinstance(record_schema.get("required"), list):  # a property some right withholds may be absent
        record_schema["required"] = [r for r in record_schema["required"] if r not in withheld]
    return {
        "service": service.name, "provider": service.provider, "operation": service.operation,
        "title": service.title, "titles": dict(service.titles), "description": service.description,
        "purposes": [{"purpose": p.name, "title": p.title, "legal_basis": p.legal_basis,
                      **({"statute": p.statute} if p.statute else {}), "withheld": sorted(deny)}
                     for p, deny in purposes],
        "params": [{"name": p.name, "required": p.required, "identifier": p.identifier,
                    **({"pattern": p.pattern.pattern} if p.pattern is not None else {}),
                    **({"description": p.description} if p.description else {})}
                   for p in params.params.values()],
        **({"one_of": list(params.one_of)} if params.one_of else {}),
        "record": info.record_kind, "record_schema": record_schema,
        "openapi": f"/v1/services/{service.name}",
    }


async def list_services(request: web.Request) -> web.Response:
    signed = await signed_request(request, DATA)
    runtime, client_id = signed.runtime, signed.caller.client_id
    catalogue = request.app[SERVICES]
    names = [n for n in service_rights(runtime.settings, client_id) if catalogue.get(n) is not None]
    signed.note.outcome = "services_listed"
    return _json({"services": [_entry(catalogue.published[n], runtime, client_id) for n in sorted(names)]})


async def describe_service(request: web.Request) -> web.Response:
    signed = await signed_request(request, DATA)
    runtime, client_id = signed.runtime, signed.caller.client_id
    name = request.match_info["service"]
    published = _visible(request, runtime, client_id, name)
    signed.note.outcome = "service_described"
    signed.note.detail["service"] = name
    return _json(openapi_document(published, _purposes(runtime, client_id, name), __version__))


async def call_service(request: web.Request) -> web.Response:
    signed = await signed_request(request, DATA)
    runtime, note, client_id = signed.runtime, signed.note, signed.caller.client_id
    settings = runtime.settings
    name = request.match_info["service"]
    published = _visible(request, runtime, client_id, name)
    note.detail["service"] = name

    payload = parse_json(signed.body, request.content_type, "service-call-request.json", runtime.settings.checks)
    params: dict[str, str] = payload["params"]
    note.purpose, note.case_ref = payload["purpose"], payload["case_ref"]
    identifiers = published.identifiers(params)
    pseudonyms = [runtime.pseudonymiser.pseudonym(kind, value) for kind, value in identifiers]
    if pseudonyms:
        note.subject = pseudonyms[0]
        if len(pseudonyms) > 1:
            note.detail["subjects"] = pseudonyms

    decision = authorise_service(settings, client_id, name, payload["purpose"])
    note.detail["decision"] = decision.reason
    published.check_params(params)
    purpose = settings.purposes[payload["purpose"]]
    note.legal_basis = purpose.statute if purpose.legal_basis == "statute" else "consent"
    if purpose.legal_basis == "consent":
        subject = {"idcs": params["idcs"]} if "idcs" in params else {}
        if not subject:
            raise BadRequest("consent-based purposes take an IDCS parameter")
        await enforce_consent(runtime, note, client_id, purpose, subject, [name])  # before any administration

    await ensure_recordable(runtime.log_health)  # the log's database answers: else 503 now, before the call
    ctx = CallContext(
        session=runtime.session,
        sign=OutboundSigner(runtime.signing_key, settings.gateway_id, client_id, payload["purpose"]),
        request_id=request[REQUEST_ID],
        client_id=client_id,
        purpose=payload["purpose"],
    )
    provider = published.service.provider
    try:
        outcome = await service_calls.call(published, params, ctx)
    except UpstreamError as exc:
        note.sources = ((provider, SOURCE_STATUS.get(exc.code, "unavailable")),)
        raise
    except service_calls.ParametersRefused:  # asked, and refused what it was asked
        note.sources = ((provider, "rejected"),)
        raise
    record = outcome.record
    note.sources = ((provider, "ok" if record is not None else "not_found"),)
    note.detail["source_latency_ms"] = {provider: round(outcome.latency_ms, 1)}  # the hourly aggregates' histogram
    data, withheld = mask_record(record.data, decision.deny) if record is not None else (None, [])
    if withheld:
        note.detail["withheld"] = withheld
    note.outcome = "answered" if record is not None else "not_found"
    return _json({
        "request_id": request[REQUEST_ID],
        "service": name,
        "provider": provider,
        "purpose": payload["purpose"],
        "legal_basis": note.legal_basis,
        "case_ref": payload["case_ref"],
        "answered_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "found": record is not None,
        "record": data,
        "withheld": withheld,
        "source": {"name": provider, "status": "ok" if record is not None else "not_found",
                   "retrieved_at": record.retrieved_at.isoformat(timespec="milliseconds") if record else None,
                   "latency_ms": round(outcome.latency_ms, 1)},
    })
