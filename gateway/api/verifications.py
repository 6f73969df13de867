"""``POST /v1/verifications``: authenticate, parse, authorise, federate, evaluate, answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp import web

from connectors.base import CallContext
from gateway.api.caller import log_can_record, signed_request
from gateway.api.validation import parse_json
from gateway.crypto.outbound import OutboundSigner
from gateway.errors import (
    NotFound,
)
from gateway.federation import checks as check_rules
from gateway.federation.executor import Subject
from gateway.policy.consent import enforce_consent
from gateway.policy.rights import apply_masks, authorise
from gateway.trust.roles import DATA
from gateway.web.state import REQUEST_ID

log = structlog.get_logger(__name__)


async def create_verification(request: web.Request) -> web.Response:
    signed = await signed_request(request, DATA)  # officers read the log; they never query citizen data
    runtime, note, caller, body = signed.runtime, signed.note, signed.caller, signed.body
    settings = runtime.settings

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
    await log_can_record(runtime)  # the log's database answers: else 503 at once, before any source is asked
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
