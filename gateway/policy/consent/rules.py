"""Who may manage consents, and what a new consent must satisfy — shared by the API and the CLI.

A client manages the consents of a purpose when one of its rights for that purpose says
``manage_consents = true`` (allowed on consent-based purposes only, checked at start-up). It may then record
a consent for any grantee that holds a right for that purpose, covering checks that grantee may run, and
list, show and revoke the consents of that purpose. Its ``evidence`` is a reference of a declared shape
(``gateway.policy.consent.evidence``). Consents are granted for an IDCS: the one identifier
that names a person across programmes, and the only one the gateway can pseudonymise without asking the
civil registry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.config.settings import Settings
from gateway.errors import BadRequest, Forbidden
from gateway.policy.consent import evidence as references
from gateway.policy.consent.store import ConsentGrant

IDCS = re.compile(r"[0-9]{10}")
CONSENT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def managed_purposes(settings: Settings, client_id: str) -> frozenset[str]:
    client = settings.clients.get(client_id)
    return frozenset(r.purpose for r in client.rights if r.manage_consents) if client else frozenset()


def require_manager(settings: Settings, client_id: str) -> frozenset[str]:
    """The purposes whose consents the client manages; 403 if none."""
    managed = managed_purposes(settings, client_id)
    if not managed:
        raise Forbidden(f"client {client_id!r} may not manage consents", "forbidden_purpose")
    return managed


def parse_time(value: str, name: str) -> datetime:
    """An RFC 3339 date-time with a time zone (``Z`` or an offset)."""
    try:
        moment = datetime.fromisoformat(value.upper())  # (RFC 3339 allows "t" and "z"; beyond µs is truncated)
    except ValueError as exc:
        raise BadRequest(f"/{name}: is not an RFC 3339 date-time") from exc
    if moment.tzinfo is None:
        raise BadRequest(f"/{name}: needs a time zone (Z or an offset)")
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 lies before the first representable instant
        raise BadRequest(f"/{name}: lies outside the years 1 to 9999 once converted to UTC") from exc


def grant_for(settings: Settings, *, citizen: str, grantee: str, purpose: str, checks: Sequence[str],
              valid_from: datetime | None, valid_until: datetime, evidence: object, granted_by: str,
              managed: frozenset[str] | None, request_id: str | None, now: datetime | None = None) -> ConsentGrant:
    """A valid ``ConsentGrant`` or a precise refusal. ``managed=None``: the ANSS office (CLI), any purpose."""
    declared = settings.purposes.get(purpose)
    if declared is None:
        raise BadRequest(f"purpose {purpose!r} is not declared on this gateway", "unknown_purpose")
    if declared.legal_basis != "consent":
        raise BadRequest(f"purpose {purpose!r} rests on a statute; it takes no consent")
    if managed is not None and purpose not in managed:
        raise Forbidden(f"client {granted_by!r} may not manage consents for purpose {purpose!r}",
                        "forbidden_purpose")
    client = settings.clients.get(grantee)
    allowed: set[str] = set()
    for right in client.rights if client else ():
        if right.purpose == purpose:
            allowed |= right.checks
    for service_right in client.services if client else ():  # a service call is consented to by its name
        if service_right.purpose == purpose:
            allowed.add(service_right.service)
    if not allowed:
        raise BadRequest(f"grantee {grantee!r} is not a client with a right for purpose {purpose!r}")
    outside = [c for c in checks if c not in allowed]
    if outside:
        raise BadRequest(f"grantee {grantee!r} may not run {outside} for purpose {purpose!r}")
    now = now or datetime.now(UTC)
    start = valid_from or now
    if valid_until <= start:
        raise BadRequest("/valid_until: must be after valid_from")
    if valid_until <= now:
        raise BadRequest("/valid_until: must be in the future")
    reference = references.stored(evidence)  # a document reference or a URL, never names or identifiers
    return ConsentGrant(citizen=citizen, grantee=grantee, purpose=purpose, checks=tuple(checks),
                        valid_from=start, valid_until=valid_until, evidence=reference, granted_by=granted_by,
                        request_id=request_id)
