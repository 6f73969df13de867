"""``POST /v1/verifications``: authenticate, parse, authorise, federate, evaluate, answer.

The access log's entry names the subject and, as ``co_subjects``, every other person whose data the
administrations gave for the answer (spouses, children), each by pseudonym, so each sees it in their own
citizen access log.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp import web

from connectors.base import CallContext, Record
from gateway.api.caller import log_can_record, signed_request
from gateway.api.validation import parse_json
from gateway.audit import Pseudonymiser
from gateway.crypto.outbound import OutboundSigner
from gateway.errors import (
    NotFound,
)
from gateway.federation import checks as check_rules
from gateway.federation.executor import Evidence, Subject
from gateway.policy.consent import enforce_consent
from gateway.policy.consent.rules import IDCS
from gateway.policy.rights import apply_masks, authorise
from gateway.trust.roles import DATA
from gateway.web.state import REQUEST_ID

log = structlog.get_logger(__name__)


def persons_read(evidence: Evidence) -> set[str]:
    """The IDCS of every person whose data an administration gave the gateway for this request: the subject, each
    person an answer was asked about (each child's enrolment and coverage, each spouse's declarations), and each
    member the family record lists (their birth date, whether alive: read too)."""
    read = {idcs for (_, idcs), answer in evidence.answers.items() if isinstance(answer, Record)}
    family = evidence.record("family", evidence.subject_idcs)
    if family is not None:
        for member in (*family.data.get("children", ()), *family.data.get("spouses", ())):
            if isinstance(member, dict) and isinstance(member.get("idcs"), str):
                read.add(member["idcs"])
    return {idcs for idcs in read if IDCS.fullmatch(idcs)}


def co_subjects(pseudonymiser: Pseudonymiser, evidence: Evidence) -> tuple[str, ...]:
    """The pseudonyms of the persons read other than the subject, sorted (the order says nothing of who is who)."""
    others = persons_read(evidence) - {evidence.subject_idcs}
    return tuple(sorted(pseudonymiser.pseudonym("idcs", idcs) for idcs in others))


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
    note.co_subjects = co_subjects(runtime.pseudonymiser, evidence)
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
