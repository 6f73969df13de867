"""The consent step of a verification: a purpose that rests on consent needs a consent in force.

Called right after ``policy.authorise`` and before any administration is contacted. For a statute-based
purpose it does nothing (the statute is the legal basis, logged as ``legal_basis``). For a consent-based
purpose the subject must be named by IDCS (a CIN would have to be resolved by the civil registry before
the consent could even be looked up) and the registry must hold a consent of that citizen, for this client
and purpose, in force now and covering every check asked for. The consent used — or, for a refusal, the
consent that failed — goes into the access-log entry as ``consent_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from gateway.config.settings import Purpose
from gateway.errors import BadRequest, Forbidden, ServiceUnavailable
from gateway.policy.consent.store import Consent, timestamp

if TYPE_CHECKING:
    from gateway.web.state import AuditNote, Runtime

log = structlog.get_logger(__name__)


async def enforce_consent(runtime: Runtime, note: AuditNote, client_id: str, purpose: Purpose,
                          subject: Mapping[str, str], checks: Sequence[str]) -> Consent | None:
    """The consent that allows this query (``None`` for a statute-based purpose), or a refusal."""
    if purpose.legal_basis != "consent":
        return None
    idcs = subject.get("idcs")
    if idcs is None:
        raise BadRequest("consent-based purposes take an IDCS subject")
    citizen = runtime.pseudonymiser.pseudonym("idcs", idcs)
    try:
        found = await runtime.consents.find_valid(citizen, client_id, purpose.name, datetime.now(UTC), checks)
    except Exception as exc:  # fail closed: without the registry, no consent can be shown
        log.error("consent_store_unavailable", error=type(exc).__name__)
        raise ServiceUnavailable("the consent registry cannot be read, so nothing is answered") from exc
    if isinstance(found, Consent):
        note.consent_id = found.consent_id
        return found
    consent = found.consent
    note.consent_id = consent.consent_id if consent else None
    if consent is None:
        raise Forbidden(f"purpose {purpose.name!r} needs the citizen's consent, and there is none for client "
                        f"{client_id!r}", "consent_missing")
    if found.reason == "revoked":
        raise Forbidden(f"the citizen's consent {consent.consent_id} was revoked", "consent_revoked")
    if found.reason == "expired":
        raise Forbidden(f"the citizen's consent {consent.consent_id} expired at {timestamp(consent.valid_until)}",
                        "consent_expired")
    if found.reason == "not_yet_valid":
        raise Forbidden(f"the citizen's consent {consent.consent_id} is valid from "
                        f"{timestamp(consent.valid_from)}", "consent_not_yet_valid")
    raise Forbidden(f"the citizen's consent {consent.consent_id} does not cover {list(found.uncovered)}",
                    "consent_out_of_scope")
