"""One verification, wherever it is asked from: the API (``POST /v1/verifications``) or a batch.

``verify`` authorises the checks, enforces the consent of a consent-based purpose before any administration
is contacted, federates the query, evaluates the checks, applies the field masks, and fills in the access-log
note as it learns things (client, purpose, legal basis, checks, subject pseudonym, sources, outcome). It raises
the gateway's errors (403 ``forbidden_*``/``consent_*``, 404 ``subject_not_found``…), which the caller turns
into a problem (the API) or a result line (a batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from connectors.base import CallContext
from gateway.audit.health import ensure_recordable
from gateway.audit.persons import co_subjects
from gateway.crypto.outbound import OutboundSigner
from gateway.errors import NotFound
from gateway.federation.executor import Federation, Subject
from gateway.policy.consent import enforce_consent
from gateway.policy.rights import apply_masks, authorise

if TYPE_CHECKING:
    from gateway.web.state import AuditNote, Runtime


async def verify(runtime: Runtime, note: AuditNote, client_id: str, purpose_name: str, subject_in: dict[str, str],
                 requested: Sequence[str] | None, case_ref: str, request_id: str,
                 federation: Federation | None = None, as_of: date | None = None,
                 language: str = "fr") -> dict[str, Any]:
    """The verification document (``schemas/verification-response.json``); ``federation`` (a batch's own
    capacity) defaults to the gateway's. ``as_of``: verify as on that earlier date (ages, school year,
    declarations, rules in force); ``language``: of what checks write in words (``fr`` or ``en``)."""
    settings = runtime.settings
    note.purpose, note.case_ref = purpose_name, case_ref
    kind, value = next(iter(subject_in.items()))
    note.subject = runtime.pseudonymiser.pseudonym(kind, value)

    note.checks = tuple(requested or ())  # what was asked, logged (and shown to the citizen) even if refused
    decision = authorise(settings, client_id, purpose_name, requested)
    checks = decision.checks
    note.checks = checks
    note.detail["decision"] = decision.reason
    purpose = settings.purposes[purpose_name]
    note.legal_basis = purpose.statute if purpose.legal_basis == "statute" else "consent"
    await ensure_recordable(runtime.log_health)  # the log's database answers: else 503 now, before any source
    await enforce_consent(runtime, note, client_id, purpose, subject_in, checks)  # before any source

    ctx = CallContext(
        session=runtime.session,
        sign=OutboundSigner(runtime.signing_key, settings.gateway_id, client_id, purpose_name),
        request_id=request_id,
        client_id=client_id,
        purpose=purpose_name,
    )
    today = as_of or datetime.now(UTC).date()
    if as_of is not None:
        note.detail["as_of"] = as_of.isoformat()
    evidence = await (federation or runtime.federation).gather(Subject(**subject_in), checks, ctx, today)
    evidence.language = language
    if evidence.subject_idcs and kind != "idcs":
        note.subject = runtime.pseudonymiser.pseudonym("idcs", evidence.subject_idcs)
    note.co_subjects = co_subjects(runtime.pseudonymiser, evidence)  # spouses, children read: each sees it
    sources = evidence.sources()
    note.sources = tuple((s["name"], s["status"]) for s in sources)
    # each source's slowest call, for the hourly aggregates' latency histograms (gateway.audit.aggregates)
    note.detail["source_latency_ms"] = {s["name"]: s["latency_ms"] for s in sources}
    if evidence.subject_unknown:
        raise NotFound("the civil registry does not know this subject", "subject_not_found")
    person = evidence.record("person", evidence.subject_idcs)
    if as_of is not None and person is not None and str(person.data.get("birth_date", "")) > as_of.isoformat():
        raise NotFound(f"the subject was not yet born on {as_of.isoformat()}", "subject_not_found")
    results = settings.checks.evaluate(checks, evidence)
    withheld = apply_masks(results, decision.withheld, today, settings.checks.withholders)
    if withheld:
        note.detail["withheld"] = withheld
    complete = all(r["status"] == "verified" for r in results.values())
    note.outcome = "answered" if complete else "partial"
    document: dict[str, Any] = {
        "request_id": request_id,
        "subject": {"idcs": evidence.subject_idcs} if evidence.subject_idcs else subject_in,
        "purpose": purpose_name,
        "legal_basis": note.legal_basis,
        "case_ref": case_ref,
        "checked_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "complete": complete,
        "checks": results,
        "sources": sources,
    }
    if as_of is not None:
        document["as_of"] = as_of.isoformat()
    return document
