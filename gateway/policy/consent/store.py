"""The consent registry's values, its store seam (``ConsentStore``) and the one rule that picks a consent.

A consent is a citizen's permission, given to one grantee (a registered client) for one purpose, covering
some data categories (the purpose's checks), inside a validity window ``[valid_from, valid_until)``. The
citizen is held only as the keyed-HMAC pseudonym of their IDCS (the same pseudonym as in the access log):
no store ever sees the identifier. A consent is never edited; it can be revoked once, and it expires by
itself at ``valid_until``.

``decide`` is the single rule every implementation applies to the consents of one (citizen, grantee,
purpose), so the SQLite store and the PostgreSQL store answer alike (``tests/consent``):

1. a consent in force at ``at`` (not revoked, ``valid_from <= at < valid_until``) that covers every
   requested check is used — the most recently granted one;
2. else, if some consent is in force but none covers the checks: ``out_of_scope``;
3. else the most recently granted consent says why: ``revoked``, ``expired`` or ``not_yet_valid``;
4. no consent at all for this grantee and purpose: ``missing`` (consents given to another grantee or for
   another purpose never count, and are not disclosed).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

from gateway.policy.consent.evidence import shown as shown_evidence

MAX_EVIDENCE_CHARS = 200
MAX_REASON_CHARS = 200

Status = Literal["active", "revoked", "expired"]
RefusalReason = Literal["missing", "revoked", "expired", "not_yet_valid", "out_of_scope"]


def utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused (a consent's window must be unambiguous)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a consent's times must carry a time zone")
    return moment.astimezone(UTC)


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds: one fixed-width text per instant (sorts as it compares)."""
    return utc(moment).isoformat(timespec="microseconds")


def check_reason(reason: str) -> str:
    """A revocation reason: 1 to ``MAX_REASON_CHARS`` characters, not only blanks."""
    if not reason.strip() or len(reason) > MAX_REASON_CHARS or any(c < " " or c == "\x7f" for c in reason):
        raise ValueError(f"the revocation reason takes 1 to {MAX_REASON_CHARS} characters, not only blanks, "
                         "no control characters")
    return reason


@dataclass(frozen=True)
class ConsentGrant:
    """What is recorded when a consent is granted; checked on construction."""

    citizen: str  # pseudonym of the citizen's IDCS
    grantee: str  # client id
    purpose: str
    checks: tuple[str, ...]  # the data categories consented to
    valid_from: datetime
    valid_until: datetime
    evidence: str  # where and how the consent was collected
    granted_by: str  # the client (or "cli:<operator>") that recorded it
    request_id: str | None = None  # the request (or CLI action) that recorded it, as in the access log

    def __post_init__(self) -> None:
        object.__setattr__(self, "valid_from", utc(self.valid_from))
        object.__setattr__(self, "valid_until", utc(self.valid_until))
        object.__setattr__(self, "checks", tuple(dict.fromkeys(self.checks)))
        if not self.checks:
            raise ValueError("a consent covers at least one check")
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if not self.evidence.strip() or len(self.evidence) > MAX_EVIDENCE_CHARS:
            raise ValueError(f"the evidence reference takes 1 to {MAX_EVIDENCE_CHARS} characters")
        if not (self.citizen and self.grantee and self.purpose and self.granted_by):
            raise ValueError("citizen, grantee, purpose and granted_by are required")


@dataclass(frozen=True)
class Consent:
    consent_id: str
    citizen: str
    grantee: str
    purpose: str
    checks: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime
    evidence: str
    granted_by: str
    created_at: datetime
    request_id: str | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    revoked_by: str | None = None

    @classmethod
    def new(cls, grant: ConsentGrant, created_at: datetime | None = None) -> Consent:
        return cls(
            consent_id=str(uuid.uuid4()), citizen=grant.citizen, grantee=grant.grantee, purpose=grant.purpose,
            checks=grant.checks, valid_from=grant.valid_from, valid_until=grant.valid_until,
            evidence=grant.evidence, granted_by=grant.granted_by,
            created_at=utc(created_at or datetime.now(UTC)), request_id=grant.request_id,
        )

    def status(self, at: datetime) -> Status:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if utc(at) >= self.valid_until else "active"

    def in_force(self, at: datetime) -> bool:
        return self.revoked_at is None and self.valid_from <= utc(at) < self.valid_until

    def document(self, at: datetime) -> dict[str, object]:
        """The API representation (``schemas/consent.json``)."""
        return {
            "consent_id": self.consent_id,
            "citizen": self.citizen,
            "grantee": self.grantee,
            "purpose": self.purpose,
            "checks": list(self.checks),
            "valid_from": timestamp(self.valid_from),
            "valid_until": timestamp(self.valid_until),
            "evidence": shown_evidence(self.evidence),
            "status": self.status(at),
            "granted_by": self.granted_by,
            "created_at": timestamp(self.created_at),
            "revoked_at": timestamp(self.revoked_at) if self.revoked_at else None,
            "revoked_reason": self.revoked_reason,
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True)
class Refusal:
    """Why no consent can be used, and the consent that says so (``None`` when there is none)."""

    reason: RefusalReason
    consent: Consent | None = None
    uncovered: tuple[str, ...] = ()  # out_of_scope: the requested checks the consent does not cover


@dataclass(frozen=True)
class Revocation:
    consent: Consent
    changed: bool  # False: it was already revoked (the first revocation stands)


def decide(candidates: Iterable[Consent], at: datetime, checks: Sequence[str] = ()) -> Consent | Refusal:
    """The module's rule, over the consents of one (citizen, grantee, purpose)."""
    at = utc(at)
    newest_first = sorted(candidates, key=lambda c: (c.created_at, c.consent_id), reverse=True)
    if not newest_first:
        return Refusal("missing")
    in_force = [c for c in newest_first if c.in_force(at)]
    for consent in in_force:
        if set(checks) <= set(consent.checks):
            return consent
    if in_force:
        best = in_force[0]
        return Refusal("out_of_scope", best, tuple(c for c in checks if c not in best.checks))
    latest = newest_first[0]
    if latest.revoked_at is not None:
        return Refusal("revoked", latest)
    return Refusal("expired" if at >= latest.valid_until else "not_yet_valid", latest)


@runtime_checkable
class ConsentStore(Protocol):
    """The consent registry. Every call reads or writes the shared store itself: no caching, so a
    revocation holds at once for every process using the same store."""

    async def open(self) -> None: ...

    async def grant(self, grant: ConsentGrant) -> Consent:
        """Record a new consent (with a fresh uuid ``consent_id``) and return it."""
        ...

    async def revoke(self, consent_id: str, reason: str, revoked_by: str,
                     at: datetime | None = None) -> Revocation | None:
        """Revoke once (a second revocation changes nothing); ``None`` if there is no such consent."""
        ...

    async def get(self, consent_id: str) -> Consent | None: ...

    async def list_for(self, citizen: str) -> list[Consent]:
        """Every consent of this citizen (pseudonym), oldest first."""
        ...

    async def find_valid(self, citizen: str, grantee: str, purpose: str, at: datetime,
                         checks: Sequence[str] = ()) -> Consent | Refusal:
        """The consent that allows ``grantee`` to run ``checks`` for ``purpose`` at ``at``, or why not
        (see ``decide``)."""
        ...

    async def close(self) -> None: ...
