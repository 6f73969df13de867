"""What one verification gathered: every answer (a record or the error in its place), keyed by
(operation, key), and per source how its calls went. The executor fills it; the checks read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from connectors.base import ConnectorError, Record

Answer = Record | ConnectorError

_STATUS_OF_ERROR = {"source_rejected": "rejected", "source_fault": "unavailable",
                    "source_malformed": "unavailable", "source_too_large": "unavailable",
                    "source_unavailable": "unavailable", "source_timeout": "timeout",
                    "source_error": "unavailable", "source_circuit_open": "unavailable",
                    "source_bulkhead_full": "unavailable"}
# worst first: a rejection (our configuration), then what the source did wrong (it reported a fault, its
# answer was off the contract or too large), then a plain failure to answer, then slowness
_ERROR_ORDER = ("source_rejected", "source_fault", "source_malformed", "source_too_large",
                "source_unavailable", "source_timeout", "source_bulkhead_full", "source_circuit_open")


@dataclass(frozen=True)
class Subject:
    idcs: str | None = None
    cin: str | None = None


@dataclass
class SourceTally:
    name: str
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    not_found: int = 0
    elapsed_ms: float = 0.0

    @property
    def worst_error(self) -> str | None:
        """The stable code of the worst failure, in ``_ERROR_ORDER``: a rejection (configuration), then a
        fault, a malformed or oversized answer, a failure to answer, and last a timeout.

        A code this gateway does not know (a plugin's own) is reported as ``source_error``.
        """
        if not self.errors:
            return None
        for code in _ERROR_ORDER:
            if code in self.errors:
                return code
        return "source_error"

    @property
    def status(self) -> str:
        worst = self.worst_error
        return "ok" if worst is None else _STATUS_OF_ERROR[worst]


@dataclass
class Evidence:
    """Every answer gathered for one verification, keyed by (operation, idcs)."""

    subject_idcs: str | None
    today: date
    subject_unknown: bool = False
    language: str = "fr"  # the caller's language for what checks write in words (``Accept-Language``)
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    tallies: dict[str, SourceTally] = field(default_factory=dict)
    # each check's result once the answers are all in, by check name (a check resting on others reads theirs)
    results: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)
    # a family record as on ``today``, by idcs, with the answer it was made from (every check reads the family)
    _families: dict[str, tuple[Record, Record]] = field(default_factory=dict, repr=False, compare=False)

    def get(self, operation: str, idcs: str | None) -> Answer | None:
        return self.answers.get((operation, idcs)) if idcs else None

    def record(self, operation: str, idcs: str | None) -> Record | None:
        """The record answered, as on ``today``: for a retroactive verification (``as_of``), the family's members
        born after that day were not yet there and are left out, and a death after that day had not happened yet
        (the person, or the member, is alive then, without a death date)."""
        answer = self.get(operation, idcs)
        if not isinstance(answer, Record):
            return None
        if operation == "family":
            assert idcs is not None  # (an answer was found)
            cached = self._families.get(idcs)
            if cached is not None and cached[0] is answer:
                return cached[1]
            family = _family_on(answer, self.today)
            self._families[idcs] = (answer, family)
            return family
        if operation == "person" and _died_after(answer.data, self.today.isoformat()):
            return replace(answer, data=_alive_then(answer.data))
        return answer

    def sources(self) -> list[dict[str, Any]]:
        """Per source: status, calls, slowest call; and the stable code of its first failure, if any."""
        out: list[dict[str, Any]] = []
        for t in self.tallies.values():
            entry: dict[str, Any] = {"name": t.name, "status": t.status, "calls": t.calls,
                                     "latency_ms": round(t.elapsed_ms, 1)}
            if t.errors:
                entry["error"] = t.worst_error
            out.append(entry)
        return out


def _died_after(person: Mapping[str, Any], on: str) -> bool:
    death = person.get("death_date")
    return not person.get("alive", True) and death is not None and str(death) > on


def _alive_then(person: Mapping[str, Any]) -> dict[str, Any]:
    return {**person, "alive": True, "death_date": None}


def _family_on(record: Record, day: date) -> Record:
    data, on = record.data, day.isoformat()
    groups = ("spouses", "children")
    if not any(m.get("birth_date", "") > on or _died_after(m, on) for g in groups for m in data.get(g, [])):
        return record
    kept = {g: [_alive_then(m) if _died_after(m, on) else m for m in data.get(g, []) if m.get("birth_date", "") <= on]
            for g in groups}
    return replace(record, data={**data, **kept})
