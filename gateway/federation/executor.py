"""Plans which administrations answer which checks, and asks them — concurrently, in stages.

Stage 0 (only for a CIN subject): the civil registry resolves the CIN to an IDCS.
Stage 1, all at once: the subject's civil record and family, and the subject-level questions of the other
checks (health coverage, employment declarations).
Stage 2, all at once: what needs the family first — every child's school enrolment and coverage, every
spouse's declarations.

A source that fails makes only its own answers missing: ``Evidence`` keeps each answer or the error in its
place, and the checks decide what they can still say. Operations are routed to whichever configured
connector declares them, so an administration is configuration, not code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import structlog

from connectors.base import (
    CallContext,
    Connector,
    ConnectorError,
    Query,
    Record,
    SourceNotFound,
    SourceUnavailable,
)
from gateway.federation.calendar import age_on, last_complete_months

log = structlog.get_logger(__name__)

Answer = Record | ConnectorError
NEEDS_FAMILY = frozenset({"household", "schooling", "health_coverage", "employment"})


@dataclass(frozen=True)
class Subject:
    idcs: str | None = None
    cin: str | None = None


_STATUS_OF_ERROR = {"source_rejected": "rejected", "source_fault": "unavailable",
                    "source_malformed": "unavailable", "source_too_large": "unavailable",
                    "source_unavailable": "unavailable", "source_timeout": "timeout",
                    "source_error": "unavailable", "source_circuit_open": "unavailable",
                    "source_bulkhead_full": "unavailable"}
# worst first: a rejection (our configuration), then what the source did wrong (it reported a fault, its
# answer was off the contract or too large), then a plain failure to answer, then slowness
_ERROR_ORDER = ("source_rejected", "source_fault", "source_malformed", "source_too_large",
                "source_unavailable", "source_timeout", "source_bulkhead_full", "source_circuit_open")


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
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    tallies: dict[str, SourceTally] = field(default_factory=dict)

    def get(self, operation: str, idcs: str | None) -> Answer | None:
        return self.answers.get((operation, idcs)) if idcs else None

    def record(self, operation: str, idcs: str | None) -> Record | None:
        answer = self.get(operation, idcs)
        return answer if isinstance(answer, Record) else None

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


class Federation:
    def __init__(self, connectors: Mapping[str, Connector]) -> None:
        self.connectors = dict(connectors)
        self.routes: dict[str, Connector] = {}
        for connector in connectors.values():
            for operation in connector.operations:
                self.routes.setdefault(operation, connector)

    async def gather(self, subject: Subject, checks: tuple[str, ...], ctx: CallContext, today: date) -> Evidence:
        evidence = Evidence(subject_idcs=subject.idcs, today=today)
        wanted = set(checks)

        if subject.idcs is None:
            assert subject.cin is not None
            answer = await self._ask(evidence, "person", {"cin": subject.cin}, ctx, key=f"cin:{subject.cin}")
            if isinstance(answer, SourceNotFound):
                evidence.subject_unknown = True
                return evidence
            if isinstance(answer, ConnectorError):
                return evidence  # cannot even resolve the subject: every check will say unavailable
            evidence.subject_idcs = str(answer.data["idcs"])
            evidence.answers[("person", evidence.subject_idcs)] = answer
        idcs = evidence.subject_idcs
        assert idcs is not None

        stage1: list[tuple[str, dict[str, str], str]] = []
        if ("person", idcs) not in evidence.answers:
            stage1.append(("person", {"idcs": idcs}, idcs))
        if wanted & NEEDS_FAMILY:
            stage1.append(("family", {"idcs": idcs}, idcs))
        if "health_coverage" in wanted:
            stage1.append(("coverage", {"idcs": idcs}, idcs))
        first, last = last_complete_months(today, 6)
        if "employment" in wanted:
            stage1.append(("declarations", {"idcs": idcs, "from": first, "to": last}, idcs))
        await self._ask_all(evidence, stage1, ctx)
        if isinstance(evidence.get("person", idcs), SourceNotFound):
            evidence.subject_unknown = True
            return evidence

        family = evidence.record("family", idcs)
        if family is None:
            return evidence
        stage2: list[tuple[str, dict[str, str], str]] = []
        for child in family.data["children"]:
            if not child["alive"]:
                continue
            age = age_on(date.fromisoformat(child["birth_date"]), today)
            if "schooling" in wanted and 6 <= age <= 20:
                stage2.append(("enrolment", {"idcs": child["idcs"]}, child["idcs"]))
            if "health_coverage" in wanted and age <= 20:
                stage2.append(("coverage", {"idcs": child["idcs"]}, child["idcs"]))
        if "employment" in wanted:
            for spouse in family.data["spouses"]:
                if spouse["alive"]:
                    stage2.append(("declarations", {"idcs": spouse["idcs"], "from": first, "to": last},
                                   spouse["idcs"]))
        await self._ask_all(evidence, stage2, ctx)
        return evidence

    async def _ask_all(self, evidence: Evidence, calls: list[tuple[str, dict[str, str], str]],
                       ctx: CallContext) -> None:
        if calls:
            await asyncio.gather(*(self._ask(evidence, op, params, ctx, key) for op, params, key in calls))

    async def _ask(self, evidence: Evidence, operation: str, params: dict[str, str], ctx: CallContext,
                   key: str) -> Answer:
        connector = self.routes.get(operation)
        if connector is None:
            answer: Answer = SourceUnavailable(operation, "no connector answers this operation")
            evidence.answers[(operation, key)] = answer
            return answer
        tally = evidence.tallies.setdefault(connector.name, SourceTally(connector.name))
        tally.calls += 1
        started = time.perf_counter()
        try:
            answer = await connector.fetch(Query(operation, params), ctx)
        except SourceNotFound as exc:
            answer = exc
            tally.not_found += 1
        except ConnectorError as exc:
            answer = exc
            tally.errors.append(exc.code)
            log.warning("source_failed", source=connector.name, operation=operation, code=exc.code)
        except Exception:  # a connector bug must not become a 500: that source is unavailable
            log.exception("connector_crashed", source=connector.name, operation=operation)
            answer = SourceUnavailable(connector.name, "connector error")
            tally.errors.append(answer.code)
        tally.elapsed_ms = max(tally.elapsed_ms, (time.perf_counter() - started) * 1000)
        evidence.answers[(operation, key)] = answer
        return answer
