"""``social_registry``: the subject's household in the Registre social unifié (RSU, run by the ANR) — whether
it is registered, its id, dates, region and socio-economic index — and the index's position against the
thresholds in force on the verification date (ASD, AMO Tadamon: ``config/rules/asd/eligibility``).

A person the RSU does not know (404) belongs to no registered household: ``registered`` is false. A
household registered after the verification date (``as_of``) was not registered then. The RSU being down
makes the check unavailable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

from connectors.base import Record, SourceNotFound
from gateway.entitlement import rules
from gateway.federation.checks.protocol import Operation, Result, answered, fact, unavailable
from gateway.federation.evidence import Evidence

FIELDS = ("household_id", "registration_date", "last_update", "region", "members", "socio_economic_index")
SOURCE = "social_registry"

_NULLABLE_BOOL = {"type": ["boolean", "null"]}
_DATE = {"type": ["string", "null"], "format": "date"}
VERDICT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "description": "The household's registration in the RSU and its index against the thresholds in force on "
                   "the verification date.",
    "additionalProperties": False,
    "required": ["registered", "household_id", "registration_date", "last_update", "region", "members",
                 "socio_economic_index", "thresholds", "below_asd_threshold", "below_amo_tadamon_threshold"],
    "properties": {
        "registered": {"type": "boolean", "description": "Registered in the RSU on the verification date."},
        "household_id": {"type": ["string", "null"]},
        "registration_date": _DATE,
        "last_update": _DATE,
        "region": {"type": ["string", "null"]},
        "members": {"type": ["integer", "null"], "minimum": 1, "description": "Living members listed."},
        "socio_economic_index": {"type": ["number", "null"]},
        "thresholds": {
            "type": ["object", "null"],
            "description": "The thresholds in force (null before any is): the index qualifies at or below.",
            "additionalProperties": False,
            "required": ["asd", "amo_tadamon", "effective_from"],
            "properties": {"asd": {"type": "number"}, "amo_tadamon": {"type": "number"},
                           "effective_from": {"type": "string", "format": "date"}},
        },
        "below_asd_threshold": {**_NULLABLE_BOOL, "description": "Index at or below the ASD threshold; null "
                                                                "when not registered or no threshold in force."},
        "below_amo_tadamon_threshold": {**_NULLABLE_BOOL, "description": "Index at or below the AMO Tadamon "
                                                                        "threshold; null likewise."},
    },
}


class SocialRegistry:
    name = "social_registry"
    facts = frozenset(FIELDS)
    labels = MappingProxyType({"fr": "Inscription au Registre social unifié (RSU)",
                               "en": "Registration in the Unified Social Registry (RSU)",
                               "ar": "التسجيل في السجل الاجتماعي الموحد"})
    operations = frozenset({"social_registration"})
    verdict_schema = VERDICT_SCHEMA

    def prepare(self, config_dir: Path) -> None:
        """At start-up: the thresholds' parameter tree loads (a mistake is one line naming file and key)."""
        rules.prepare(config_dir)

    def plan(self, known: Evidence) -> Iterator[Operation]:
        if known.subject_idcs:
            yield Operation("social_registration", {"idcs": known.subject_idcs})

    def evaluate(self, evidence: Evidence) -> Result:
        answer = evidence.get("social_registration", evidence.subject_idcs)
        if isinstance(answer, Record):
            return answered(*registration(answer, evidence.today), [])
        if isinstance(answer, SourceNotFound):
            return answered(_verdict(None, evidence.today), [], [])
        return unavailable(SOURCE)

    def summary(self, verdict: Mapping[str, Any]) -> str:
        if not verdict["registered"]:
            return "not registered in the RSU"
        return (f"RSU index {verdict['socio_economic_index']} below ASD threshold={verdict['below_asd_threshold']} "
                f"below AMO Tadamon threshold={verdict['below_amo_tadamon_threshold']}")


def registration(record: Record, today: date) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The verdict and facts of a registration record (also what ``asd_entitlement`` rests on)."""
    data = record.data
    if date.fromisoformat(str(data["registration_date"])) > today:
        return _verdict(None, today), []
    facts = [fact(key, data[key], str(data["idcs"]), record) for key in FIELDS]
    return _verdict(data, today), facts


def _verdict(data: Mapping[str, Any] | None, today: date) -> dict[str, Any]:
    # the two thresholds as in force themselves (not the whole ASD table's snapshot, which is absent as soon as
    # any rate it needs is: the thresholds still hold then)
    parameters = rules.asd().parameters
    asd_at, amo_at = (parameters[name].at(today) for name in ("eligibility.asd_threshold",
                                                                "eligibility.amo_tadamon_threshold"))
    asd = float(asd_at[1]) if asd_at is not None else None
    amo = float(amo_at[1]) if amo_at is not None else None
    thresholds: dict[str, Any] | None = None
    if asd_at is not None and amo_at is not None:
        thresholds = {"asd": asd, "amo_tadamon": amo, "effective_from": max(asd_at[0], amo_at[0]).isoformat()}
    index = float(data["socio_economic_index"]) if data is not None else None
    return {
        "registered": data is not None,
        "household_id": data["household_id"] if data else None,
        "registration_date": str(data["registration_date"]) if data else None,
        "last_update": str(data["last_update"]) if data else None,
        "region": data["region"] if data else None,
        "members": len(data["members"]) if data else None,
        "socio_economic_index": index,
        "thresholds": thresholds,
        "below_asd_threshold": None if index is None or asd is None else index <= asd,
        "below_amo_tadamon_threshold": None if index is None or amo is None else index <= amo,
    }


CHECK = SocialRegistry()
