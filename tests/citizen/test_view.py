"""What a citizen is shown of access-log entries, shaped from real entries (``AccessRecord.canonical``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from gateway.audit import AccessRecord, Pseudonymiser
from gateway.citizen.view import Viewer, classify
from gateway.config.settings import Settings, load
from gateway.policy.consent.store import Consent, ConsentGrant
from tests.citizen.walk import assert_nothing_internal

KEY = bytes(range(32))
PSEUDONYMS = Pseudonymiser(KEY)
ME = PSEUDONYMS.pseudonym("idcs", "1234567890")
MY_CIN = PSEUDONYMS.pseudonym("cin", "AB12345")
OTHER = PSEUDONYMS.pseudonym("idcs", "9876543210")
NOW = datetime.now(UTC)
ASD_STATUTE = "Loi n° 58-23 relative au régime de soutien social direct; décrets n° 2.23.1067 et 2.23.1068"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load(env={})


def entry(**fields: Any) -> dict[str, Any]:
    """A real entry's canonical bytes, decoded as the log's search returns them."""
    base: dict[str, Any] = {
        "time": "2026-05-04T09:12:03.123456+00:00", "request_id": "a" * 32, "method": "POST",
        "path": "/v1/verifications", "status": 200, "outcome": "answered", "latency_ms": 12.5, "client": "anss.asd",
        "purpose": "asd.eligibility", "legal_basis": ASD_STATUTE, "case_ref": "DOSSIER-42",
        "checks": ("identity", "household"), "subject": ME, "sources": (("civil_registry", "ok"),),
        "request_sha256": "b" * 64, "response_sha256": "c" * 64, "detail": {"jti": "j" * 20, "decision": "x"},
    }
    base.update(fields)
    decoded: dict[str, Any] = orjson.loads(AccessRecord(**base).canonical())
    return decoded


def consent(**changes: Any) -> Consent:
    grant = ConsentGrant(citizen=ME, grantee="mhpv.housing", purpose="partner.social-housing",
                         checks=("identity", "household"), valid_from=NOW - timedelta(days=1),
                         valid_until=NOW + timedelta(days=365), evidence="Formulaire signé au guichet de Salé",
                         granted_by="cli:amina", request_id="d" * 32)
    return replace(Consent.new(grant, NOW - timedelta(days=1)), **changes)


def viewer(settings: Settings, language: str = "fr", consents: dict[str, Consent] | None = None) -> Viewer:
    return Viewer(settings, frozenset({ME, MY_CIN}), language, consents or {})  # type: ignore[arg-type]


def test_a_statute_based_verification(settings: Settings) -> None:
    shown = viewer(settings).show(entry())
    assert shown == {
        "time": "2026-05-04T09:12:03Z",
        "event": "verification",
        "event_label": "Vérification de vos données",
        "by": "Agence nationale du soutien social (ANSS) — service de l'aide sociale directe",
        "purpose": "Aide sociale directe — éligibilité et revue périodique",
        "case_ref": "DOSSIER-42",
        "data": ["Identité et état civil", "Composition du ménage"],
        "legal_basis": {"type": "statute", "statute": ASD_STATUTE},
        "outcome": "answered",
        "outcome_label": "Réponse complète",
    }
    english = viewer(settings, "en").show(entry())
    assert english is not None
    assert english["by"] == "National Social Support Agency (ANSS) — direct social support service"
    assert english["purpose"] == "Direct social support (ASD) — eligibility and periodic review"
    assert english["data"] == ["Identity and civil status", "Household composition"]
    assert english["event_label"] == "Your data was checked" and english["outcome_label"] == "Answered in full"


def test_the_statute_shown_is_the_one_logged_at_the_time(settings: Settings) -> None:
    shown = viewer(settings).show(entry(legal_basis="Loi n° 58-23 (version de 2025)"))
    assert shown is not None
    assert shown["legal_basis"] == {"type": "statute", "statute": "Loi n° 58-23 (version de 2025)"}


def test_a_consent_based_verification_shows_the_consent(settings: Settings) -> None:
    given = consent()
    logged = entry(client="mhpv.housing", purpose="partner.social-housing", legal_basis="consent",
                   consent_id=given.consent_id, checks=("identity",))
    shown = viewer(settings, consents={given.consent_id: given}).show(logged)
    assert shown is not None
    assert shown["by"] == "Ministère de l'Habitat — programme de logement social"
    assert shown["legal_basis"] == {"type": "consent", "consent": {
        "consent_id": given.consent_id,
        "granted_at": given.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "valid_from": given.valid_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "valid_until": given.valid_until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "grantee": "Ministère de l'Habitat — programme de logement social",
        "status": "active",
        "evidence": "Formulaire signé au guichet de Salé",
    }}
    hidden = Viewer(replace(settings, citizens=replace(settings.citizens, show_consent_evidence=False)),
                    frozenset({ME}), "fr", {given.consent_id: given}).show(logged)
    assert hidden is not None and "evidence" not in hidden["legal_basis"]["consent"]


def test_a_consent_of_another_citizen_is_never_detailed(settings: Settings) -> None:
    theirs = consent(citizen=OTHER)
    logged = entry(legal_basis="consent", consent_id=theirs.consent_id, purpose="partner.social-housing")
    shown = viewer(settings, consents={theirs.consent_id: theirs}).show(logged)
    assert shown is not None
    assert shown["legal_basis"] == {"type": "consent", "consent": {"consent_id": theirs.consent_id}}


@pytest.mark.parametrize(("outcome", "expected"), [
    ("answered", "answered"), ("partial", "partial"), ("consent_missing", "refused"), ("forbidden_check", "refused"),
    ("subject_not_found", "refused"), ("audit_unavailable", "refused"), ("rate_limited", "refused"),
])
def test_outcomes_in_plain_terms(settings: Settings, outcome: str, expected: str) -> None:
    shown = viewer(settings, "en").show(entry(outcome=outcome, status=200 if outcome in ("answered", "partial")
                                              else 403))
    assert shown is not None and shown["outcome"] == expected
    assert shown["outcome_label"] in {"Answered in full", "Partly answered: an administration could not answer",
                                      "Refused: no data was disclosed"}


def test_a_refusal_for_want_of_consent(settings: Settings) -> None:
    shown = viewer(settings).show(entry(client="mhpv.housing", purpose="partner.social-housing",
                                        legal_basis="consent", outcome="consent_missing", status=403))
    assert shown is not None
    assert (shown["outcome"], shown["legal_basis"]) == ("refused", {"type": "consent", "consent": None})


def test_consent_changes_and_readings(settings: Settings) -> None:
    given = consent()
    consents = {given.consent_id: given}
    granted = entry(method="POST", path="/v1/consents", status=201, outcome="consent_granted", client="mhpv.housing",
                    purpose="partner.social-housing", legal_basis="consent", consent_id=given.consent_id,
                    case_ref=None, detail={"grantee": "mhpv.housing"})
    shown = viewer(settings, consents=consents).show(granted)
    assert shown is not None
    assert (shown["event"], shown["event_label"], shown["outcome"]) == ("consent_granted", "Consentement enregistré",
                                                                        None)
    assert shown["by"] == "Ministère de l'Habitat — programme de logement social"
    assert shown["legal_basis"]["consent"]["consent_id"] == given.consent_id
    revoked = consent(revoked_at=NOW, revoked_by="cli:amina", revoked_reason="à la demande du citoyen")
    by_office = entry(method="CLI", path="consent revoke", outcome="consent_revoked", client="cli:amina",
                      purpose="partner.social-housing", legal_basis="consent", consent_id=given.consent_id)
    shown = viewer(settings, "en", {given.consent_id: revoked}).show(by_office)
    assert shown is not None
    assert shown["event"] == "consent_revoked"
    assert shown["by"] == "National Social Support Agency (ANSS) — consent office"
    assert shown["legal_basis"]["consent"]["status"] == "revoked" and "revoked_at" in shown["legal_basis"]["consent"]
    assert "amina" not in orjson.dumps(shown).decode() and "à la demande" not in orjson.dumps(shown).decode()
    listed = entry(method="GET", path="/v1/consents", outcome="consents_listed", client="mhpv.housing",
                   purpose=None, legal_basis=None, case_ref=None, checks=())
    shown = viewer(settings).show(listed)
    assert shown is not None and (shown["event"], shown["legal_basis"], shown["purpose"]) == (
        "consent_viewed", None, None)


@pytest.mark.parametrize("fields", [
    {"subject": OTHER},  # another citizen's entry, even if a search returned it
    {"subject": None},
    {"method": "GET", "path": "/v1/citizen/access-log", "client": "citizen", "outcome": "citizen_access_log_read"},
    {"method": "GET", "path": "/v1/audit/entries", "client": "officer.dpo", "outcome": "answered"},
    {"method": "GET", "path": "/console/search", "client": "officer.dpo", "outcome": "answered"},
    {"method": "POST", "path": "/v1/consents", "outcome": "forbidden_purpose", "status": 403},
    {"method": "POST", "path": "/v1/consents/x/revoke", "outcome": "consent_already_revoked"},
    {"method": "CLI", "path": "audit verify", "outcome": "answered"},
    {"method": "GET", "path": "/v1/verifications", "outcome": "method_not_allowed"},
])
def test_what_is_never_shown(settings: Settings, fields: dict[str, Any]) -> None:
    logged = entry(**fields)
    assert classify(logged, {ME, MY_CIN}) is None
    assert viewer(settings).show(logged) is None


def test_an_entry_under_the_cin_pseudonym_is_shown(settings: Settings) -> None:
    shown = viewer(settings).show(entry(subject=MY_CIN, outcome="subject_not_found", status=404))
    assert shown is not None and shown["outcome"] == "refused"


def test_a_client_no_longer_registered_is_not_named_by_its_id(settings: Settings) -> None:
    shown = viewer(settings).show(entry(client="old.partner", purpose="retired.purpose", legal_basis=None))
    assert shown is not None
    assert shown["by"] == "Un organisme qui n'est plus raccordé à la passerelle"
    assert "old.partner" not in orjson.dumps(shown).decode()


def test_no_internal_detail_in_any_shown_entry(settings: Settings) -> None:
    given = consent()
    logged = [
        entry(),
        entry(outcome="partial", sources=(("civil_registry", "ok"), ("education", "timeout")),
              detail={"withheld": ["household.birth_date"], "jti": "k" * 20}),
        entry(client="mhpv.housing", purpose="partner.social-housing", legal_basis="consent",
              consent_id=given.consent_id, outcome="consent_revoked", status=403,
              detail={"reason": "the citizen's consent was revoked"}),
        entry(method="POST", path="/v1/consents", outcome="consent_granted", consent_id=given.consent_id,
              client="mhpv.housing", detail={"grantee": "mhpv.housing"}),
    ]
    shown = [viewer(settings, consents={given.consent_id: given}).show(e) for e in logged]
    assert all(s is not None for s in shown)
    secrets = [ME, MY_CIN, "a" * 32, "b" * 64, "c" * 64, "d" * 32, "j" * 20, "k" * 20, "anss.asd", "mhpv.housing",
               "civil_registry", "education", "timeout", "household.birth_date", "revoked", "12.5", "cli:",
               "1234567890"]
    assert assert_nothing_internal(shown, secrets) > 40
