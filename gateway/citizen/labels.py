"""What a citizen reads, in French (the default) and English: events, outcomes, and the
names of those who act without being a registered client (the ANSS office, a client since removed).

Checks' names come from the check registry (each check's ``labels``, gateway/federation/checks/); clients'
names and purposes' titles come from ``clients.toml`` and ``purposes.toml`` (``name_fr``,
``name_en``, ``title_fr``, ``title_en``; else ``name`` or ``title``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Language = Literal["fr", "en"]
DEFAULT_LANGUAGE: Language = "fr"

EVENTS: Mapping[str, Mapping[Language, str]] = {
    "verification": {"fr": "Vérification de vos données", "en": "Your data was checked"},
    "household_verification": {"fr": "Vos données lues pour la vérification d'un membre de votre foyer",
                               "en": "Your data was read to check a member of your household"},
    "consent_granted": {"fr": "Consentement enregistré", "en": "Consent recorded"},
    "consent_revoked": {"fr": "Consentement révoqué", "en": "Consent revoked"},
    "consent_viewed": {"fr": "Consultation de vos consentements", "en": "Your consents were viewed"},
}

OUTCOMES: Mapping[str, Mapping[Language, str]] = {
    "answered": {"fr": "Réponse complète", "en": "Answered in full"},
    "partial": {"fr": "Réponse partielle : une administration n'a pas pu répondre",
                "en": "Partly answered: an administration could not answer"},
    "refused": {"fr": "Demande refusée : aucune donnée n'a été communiquée",
                "en": "Refused: no data was disclosed"},
}

ANSS_OFFICE: Mapping[Language, str] = {
    "fr": "Agence nationale du soutien social (ANSS) — bureau des consentements",
    "en": "National Social Support Agency (ANSS) — consent office",
}
UNREGISTERED: Mapping[Language, str] = {
    "fr": "Un organisme qui n'est plus raccordé à la passerelle",
    "en": "An organisation no longer connected to the gateway",
}


def choose_language(accept_language: str | None) -> Language:
    """``en`` when the ``Accept-Language`` header prefers English to French, else ``fr`` (RFC 9110 q-values;
    among equal qualities the first listed wins)."""
    ranked: list[tuple[float, int, Language]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, *params = item.split(";")
        primary = tag.strip().lower().split("-")[0]
        quality = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if 0.0 < quality <= 1.0 and primary in ("fr", "en", "*"):
            ranked.append((quality, -position, "en" if primary == "en" else DEFAULT_LANGUAGE))
    return max(ranked)[2] if ranked else DEFAULT_LANGUAGE
