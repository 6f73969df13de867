"""What a citizen is shown of an access-log entry about them, and what is never shown.

Shown (an allow-list, by the entry's method, path and outcome):

* ``verification`` — a client's ``POST /v1/verifications`` about the citizen, whatever its outcome;
* ``household_verification`` — a verification about someone else that read the citizen's data (a spouse's or
  a parent's: the entry names them among its ``co_subjects``). Shown without its case reference, and with a
  consent basis as ``{"type": "consent", "consent": null}``: the case and the consent are the other person's;
* ``consent_granted`` / ``consent_revoked`` — a change of one of their consents (API or ANSS office);
* ``consent_viewed`` — a client (or the office) listing or reading their consents.

Everything else is never shown: the citizen's own reads of this log (they are logged, as every request),
refused consent actions that changed nothing, officers' activity, and any other kind of entry a future
version logs — an entry kind is shown only once it is added here.

Of a shown entry, only these facts leave the gateway, each as plain text in the citizen's language: when
(to the second), who (the client's display name; the ANSS office; never a client id, key id or operator),
the purpose's title and the case reference, the data categories, the legal basis (the statute as logged at
the time, or the consent: its id, grant date, validity, grantee, status and — if configured — its evidence
reference), and the outcome (answered, partial, refused). Never request ids, digests, sources or their
error codes, latency, field masks, refusal reasons, key ids or anybody's pseudonym.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.citizen import labels
from gateway.citizen.labels import Language
from gateway.config.settings import Settings
from gateway.policy.consent.evidence import shown as shown_evidence
from gateway.policy.consent.store import Consent, timestamp

VERIFICATIONS = ("POST", "/v1/verifications")
CONSENT_EVENTS = {"consent_granted": "consent_granted", "consent_revoked": "consent_revoked",
                  "consent_shown": "consent_viewed", "consents_listed": "consent_viewed"}
ANSWERED = ("answered", "partial")


def _is_consent_action(method: Any, path: Any) -> bool:
    if not isinstance(path, str):
        return False
    if method in ("GET", "POST"):
        return path == "/v1/consents" or path.startswith("/v1/consents/")
    return method == "CLI" and path.startswith("consent ")


def classify(entry: Mapping[str, Any], pseudonyms: Collection[str]) -> str | None:
    """The kind of event this entry is for the citizen with these pseudonyms, or ``None``: not shown."""
    method, path = entry.get("method"), entry.get("path")
    if entry.get("subject") not in pseudonyms:
        co = entry.get("co_subjects")
        if (method, path) == VERIFICATIONS and isinstance(co, list) and any(p in pseudonyms for p in co):
            return "household_verification"  # the citizen's data was read for someone else's verification
        return None  # never another citizen's entry, whatever the search returned
    if (method, path) == VERIFICATIONS:
        return "verification"
    if _is_consent_action(method, path):
        return CONSENT_EVENTS.get(str(entry.get("outcome")))
    return None


@dataclass(frozen=True)
class Viewer:
    """Whose log is shown, in which language, with what the gateway knows to name things."""

    settings: Settings
    pseudonyms: frozenset[str]
    language: Language
    consents: Mapping[str, Consent]  # consent_id -> the consent, for the consents the page refers to

    def who(self, client: Any) -> str:
        if isinstance(client, str) and client.startswith("cli:"):
            return labels.ANSS_OFFICE[self.language]
        registered = self.settings.clients.get(client) if isinstance(client, str) else None
        if registered is None:
            return labels.UNREGISTERED[self.language]
        return registered.names.get(self.language) or registered.name

    def purpose(self, code: Any) -> str | None:
        if not isinstance(code, str):
            return None
        declared = self.settings.purposes.get(code)
        if declared is None:
            return code  # as the client named it; refused as unknown_purpose
        return declared.titles.get(self.language) or declared.title or code

    def data(self, checks: Any) -> list[str]:
        known = self.settings.checks
        return [known.label(c, self.language) for c in checks or () if isinstance(c, str) and c in known]

    def consent(self, consent_id: Any) -> dict[str, Any] | None:
        if not isinstance(consent_id, str):
            return None
        consent = self.consents.get(consent_id)
        if consent is None or consent.citizen not in self.pseudonyms:
            return {"consent_id": consent_id}
        shown: dict[str, Any] = {
            "consent_id": consent.consent_id,
            "granted_at": _second(timestamp(consent.created_at)),
            "valid_from": _second(timestamp(consent.valid_from)),
            "valid_until": _second(timestamp(consent.valid_until)),
            "grantee": self.who(consent.grantee),
            "status": consent.status(datetime.now(UTC)),
        }
        if consent.revoked_at is not None:
            shown["revoked_at"] = _second(timestamp(consent.revoked_at))
        if self.settings.citizens.show_consent_evidence:
            shown["evidence"] = shown_evidence(consent.evidence)
        return shown

    def show(self, entry: Mapping[str, Any]) -> dict[str, Any] | None:
        """The citizen's view of one entry, or ``None`` if it is not shown to them."""
        kind = classify(entry, self.pseudonyms)
        if kind is None:
            return None
        outcome = None
        verification = kind in ("verification", "household_verification")
        if verification:
            outcome = entry["outcome"] if entry.get("outcome") in ANSWERED else "refused"
        basis = entry.get("legal_basis")
        legal_basis: dict[str, Any] | None = None
        if kind == "household_verification" and basis == "consent":
            legal_basis = {"type": "consent", "consent": None}  # the other person's consent: not theirs to see
        elif basis == "consent" or not verification:
            consent = self.consent(entry.get("consent_id"))
            legal_basis = {"type": "consent", "consent": consent} if consent or kind == "verification" else None
        elif isinstance(basis, str) and basis:
            legal_basis = {"type": "statute", "statute": basis}
        return {
            "time": _second(str(entry.get("time", ""))),
            "event": kind,
            "event_label": labels.EVENTS[kind][self.language],
            "by": self.who(entry.get("client")),
            "purpose": self.purpose(entry.get("purpose")),
            "case_ref": entry.get("case_ref") if kind == "verification" else None,  # not another person's case
            "data": self.data(entry.get("checks")),
            "legal_basis": legal_basis,
            "outcome": outcome,
            "outcome_label": labels.OUTCOMES[outcome][self.language] if outcome else None,
        }


def _second(moment: str) -> str:
    """An RFC 3339 time in UTC, to the second (``2026-05-04T09:12:03Z``)."""
    parsed = datetime.fromisoformat(moment)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
