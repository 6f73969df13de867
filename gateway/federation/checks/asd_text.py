"""What ``asd_entitlement`` says in words: its explanation lines, in French (the default) or English, and
the JSON Schema of its verdict."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from gateway.entitlement.asd import Component, Entitlement

Lang = str

_RULES: Mapping[str, Mapping[Lang, str]] = {
    "children.ranks_1_3.young_or_in_school": {"fr": "enfant de rang 1 à 3, de 0 à 5 ans ou scolarisé",
                                              "en": "rank 1–3 child, aged 0–5 or in school"},
    "children.ranks_1_3.not_in_school": {"fr": "enfant de rang 1 à 3, de 6 à 20 ans, non scolarisé",
                                         "en": "rank 1–3 child, aged 6–20, not in school"},
    "children.ranks_1_3.father_deceased": {"fr": "enfant de rang 1 à 3, orphelin de père",
                                           "en": "rank 1–3 child, father deceased"},
    "children.ranks_4_6.young_or_in_school": {"fr": "enfant de rang 4 à 6, de 0 à 5 ans ou scolarisé",
                                              "en": "rank 4–6 child, aged 0–5 or in school"},
    "children.ranks_4_6.not_in_school": {"fr": "enfant de rang 4 à 6, non scolarisé",
                                         "en": "rank 4–6 child, not in school"},
    "children.severe_disability_supplement": {"fr": "supplément handicap sévère",
                                              "en": "severe-disability supplement"},
    "household.without_child": {"fr": "forfait du ménage sans enfant de moins de 21 ans",
                                "en": "flat amount, household without a child under 21"},
    "household.floor": {"fr": "complément jusqu'au minimum par ménage", "en": "top-up to the household floor"},
    "birth_grant.first_birth": {"fr": "première naissance", "en": "first birth"},
    "birth_grant.second_birth": {"fr": "deuxième naissance", "en": "second birth"},
}
_REASONS: Mapping[str, Mapping[Lang, str]] = {
    "not_registered": {"fr": "le ménage n'est pas inscrit au RSU", "en": "the household is not registered in the RSU"},
    "index_above_threshold": {"fr": "l'indice socio-économique dépasse le seuil",
                              "en": "the socio-economic index is above the threshold"},
    "salaried_parent": {"fr": "un parent a un emploi salarié déclaré à la CNSS (allocations familiales, "
                              "pas de cumul)",
                        "en": "a parent has salaried work declared to the CNSS (family allowances, no cumulation)"},
    "head_not_alive": {"fr": "le chef de ménage n'est pas en vie", "en": "the head of household is not alive"},
}
_WORDS: Mapping[str, Mapping[Lang, str]] = {
    "rates": {"fr": "Barème en vigueur le {on} : celui du {since}.", "en": "Rates in force on {on}: those of {since}."},
    "no_rates": {"fr": "Aucun barème de l'ASD n'est en vigueur le {on}.", "en": "No ASD rates are in force on {on}."},
    "a_child": {"fr": "La personne est un enfant du ménage (moins de 21 ans, un parent à l'état civil) : "
                      "vérifier le ménage par l'un de ses parents.",
                "en": "The person is a child of the household (under 21, a parent in the civil registry): "
                      "verify the household through one of the parents."},
    "rsu": {"fr": "RSU : ménage {id}, indice {index} (seuil {threshold} : {position}).",
            "en": "RSU: household {id}, index {index} (threshold {threshold}: {position})."},
    "below": {"fr": "en dessous ou égal", "en": "at or below"},
    "above": {"fr": "au-dessus", "en": "above"},
    "line": {"fr": "{label}{who} : {amount} MAD", "en": "{label}{who}: {amount} MAD"},
    "total": {"fr": "Montant mensuel indicatif : {amount} MAD.", "en": "Indicative monthly amount: {amount} MAD."},
    "grant": {"fr": "Prime de naissance ({label}) pour {member}, né(e) le {born} : {amount} MAD, à demander "
                    "avant le {until}.",
              "en": "Birth grant ({label}) for {member}, born {born}: {amount} MAD, to claim by {until}."},
    "not_eligible": {"fr": "Non éligible : {reasons}.", "en": "Not eligible: {reasons}."},
    "unknown": {"fr": "Éligibilité indéterminée : manquent {missing}.",
                "en": "Eligibility undecided: missing {missing}."},
}


def language(requested: str) -> Lang:
    return "en" if requested == "en" else "fr"


def _say(key: str, lang: Lang, **values: Any) -> str:
    return _WORDS[key][language(lang)].format(**values)


def _line(c: Component, lang: Lang) -> str:
    label = _RULES[c.rule][language(lang)]
    if c.member is None:
        who = ""
    elif c.rank is not None:
        who = f" (rang {c.rank}, {c.member})" if language(lang) == "fr" else f" (rank {c.rank}, {c.member})"
    else:
        who = f" ({c.member})"
    label = label[0].upper() + label[1:]
    return _say("line", lang, label=label, who=who, amount=c.amount_mad)


def explain(outcome: Entitlement, results: Mapping[str, Any], lang: Lang) -> list[str]:
    """The computation as short lines a caseworker reads."""
    lines = [_say("rates", lang, on=outcome.on.isoformat(), since=outcome.rates_effective_from.isoformat())]
    registry = results["social_registry"]["verdict"]
    if registry is not None and registry["registered"]:
        below = registry["socio_economic_index"] <= outcome.threshold
        lines.append(_say("rsu", lang, id=registry["household_id"], index=registry["socio_economic_index"],
                          threshold=outcome.threshold, position=_say("below" if below else "above", lang)))
    if outcome.eligible is False:
        reasons = "; ".join(_REASONS[r][language(lang)] for r in outcome.reasons)
        return [*lines, _say("not_eligible", lang, reasons=reasons)]
    lines += [_line(c, lang) for c in outcome.components]
    if outcome.eligible is None:
        return [*lines, _say("unknown", lang, missing=", ".join(outcome.missing))]
    lines.append(_say("total", lang, amount=outcome.monthly_amount_mad))
    for g in outcome.birth_grants:
        lines.append(_say("grant", lang, label=_RULES[g.rule][language(lang)], member=g.member,
                          born=g.born_on.isoformat(), amount=g.amount_mad, until=g.claim_until.isoformat()))
    return lines


def a_child_asked(on: date, since: date, lang: Lang) -> dict[str, Any]:
    """The verdict when the subject is a child of a household: undecided, asked through a parent instead."""
    return {"eligible": None, "missing": ["head_of_household"], "monthly_amount_mad": None,
            "rates_effective_from": since.isoformat(), "as_of": on.isoformat(), "components": [], "reasons": [],
            "birth_grants": [], "language": language(lang),
            "explanation": [_say("rates", lang, on=on.isoformat(), since=since.isoformat()), _say("a_child", lang)]}


def no_rates(on: date, lang: Lang) -> dict[str, Any]:
    """The verdict on a date before any ASD rates were in force."""
    return {"eligible": None, "missing": ["rates_in_force"], "monthly_amount_mad": None,
            "rates_effective_from": None, "as_of": on.isoformat(), "components": [], "reasons": [],
            "birth_grants": [], "language": language(lang), "explanation": [_say("no_rates", lang, on=on.isoformat())]}


_FACTS = {"type": "array", "items": {"$ref": "#/$defs/fact"}}
_NULLABLE_INT = {"type": ["integer", "null"], "minimum": 0}
VERDICT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "description": "Entitlement to the Aide sociale directe on the verification date (`as_of`): eligibility, the "
                   "indicative monthly amount line by line, the birth grants due, and why not (docs/asd.md).",
    "additionalProperties": False,
    "required": ["eligible", "missing", "monthly_amount_mad", "rates_effective_from", "as_of", "components",
                 "reasons", "birth_grants", "language", "explanation"],
    "properties": {
        "eligible": {"type": ["boolean", "null"], "description": "Null when a fact it needs is unavailable."},
        "missing": {"type": "array", "items": {"type": "string"},
                    "description": "What could not be established, as `<check>.<fact>[:<member IDCS>]`."},
        "monthly_amount_mad": _NULLABLE_INT,
        "rates_effective_from": {"type": ["string", "null"], "format": "date",
                                 "description": "The date of the rate table used."},
        "as_of": {"type": "string", "format": "date"},
        "components": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["rule", "member", "rank", "amount_mad", "facts", "legal_reference"],
            "properties": {"rule": {"type": "string"}, "member": {"type": ["string", "null"]},
                           "rank": _NULLABLE_INT, "amount_mad": {"type": "integer", "minimum": 0},
                           "facts": _FACTS, "legal_reference": {"type": "string", "minLength": 1}}}},
        "reasons": {"type": "array", "items": {"enum": sorted(_REASONS)}},
        "birth_grants": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["member", "born_on", "birth_rank", "amount_mad", "claim_until", "rule", "legal_reference"],
            "properties": {"member": {"type": "string"},
                           "born_on": {"type": ["string", "null"], "format": "date",
                                       "description": "Null when a field mask withholds the birth date."},
                           "birth_rank": {"type": "integer", "minimum": 1},
                           "amount_mad": {"type": "integer", "minimum": 0},
                           "claim_until": {"type": ["string", "null"], "format": "date",
                                           "description": "Null when a field mask withholds the birth date."},
                           "rule": {"type": "string"},
                           "legal_reference": {"type": "string"}}}},
        "language": {"enum": ["fr", "en"]},
        "explanation": {"type": "array", "items": {"type": "string"}},
    },
}
