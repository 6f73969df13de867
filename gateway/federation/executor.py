"""Runs the requested checks' plans (``plan.py``) against the administrations, in rounds, each round
concurrently.

First the subject: a CIN is resolved to an IDCS by the civil registry (``person``). Then rounds: every
requested check's ``plan`` says what it wants given the evidence so far; the operations not yet asked are
deduplicated by (operation, key) and run at once (``asyncio.gather``); this repeats until no plan wants
anything new. The first round always asks for the subject's civil record too: an IDCS the civil registry
does not know ends the verification (``subject_unknown``). With the built-in checks that is two rounds:
the subject's record, family, coverage and declarations; then what needs the family (children's
enrolment and coverage, spouses' declarations).

A source that fails makes only its own answers missing: ``Evidence`` keeps each answer or the error in its
place, and the checks decide what they can still say. Operations are routed to whichever configured
connector declares them, so an administration is configuration, not code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import date

import structlog

from connectors.base import (
    CallContext,
    Connector,
    ConnectorError,
    Query,
    SourceNotFound,
    SourceUnavailable,
)
from gateway.federation.checks.protocol import Operation
from gateway.federation.checks.registry import CheckRegistry, builtin
from gateway.federation.evidence import Answer, Evidence, SourceTally, Subject
from gateway.federation.plan import first_round, next_round

__all__ = ["MAX_ROUNDS", "Answer", "Evidence", "Federation", "SourceTally", "Subject"]

log = structlog.get_logger(__name__)

MAX_ROUNDS = 8  # a plan that keeps wanting new keys is cut off here (the built-ins need two)


class Federation:
    def __init__(self, connectors: Mapping[str, Connector], checks: CheckRegistry | None = None) -> None:
        self.connectors = dict(connectors)
        self.checks = checks if checks is not None else builtin()
        self.routes: dict[str, Connector] = {}
        for connector in connectors.values():
            for operation in connector.operations:
                self.routes.setdefault(operation, connector)

    async def gather(self, subject: Subject, checks: tuple[str, ...], ctx: CallContext, today: date) -> Evidence:
        evidence = Evidence(subject_idcs=subject.idcs, today=today)
        if subject.idcs is None:
            assert subject.cin is not None
            answer = await self._ask(evidence, Operation("person", {"cin": subject.cin}, f"cin:{subject.cin}"), ctx)
            if isinstance(answer, SourceNotFound):
                evidence.subject_unknown = True
                return evidence
            if isinstance(answer, ConnectorError):
                return evidence  # cannot even resolve the subject: every check will say unavailable
            evidence.subject_idcs = str(answer.data["idcs"])
            evidence.answers[("person", evidence.subject_idcs)] = answer
        idcs = evidence.subject_idcs
        assert idcs is not None

        plans = [self.checks[c] for c in checks]
        calls = first_round(plans, evidence)
        for _ in range(MAX_ROUNDS):
            if calls:
                await asyncio.gather(*(self._ask(evidence, op, ctx) for op in calls))
            if isinstance(evidence.get("person", idcs), SourceNotFound):
                evidence.subject_unknown = True
                return evidence
            calls = next_round(plans, evidence)
            if not calls:
                return evidence
        log.warning("plan_rounds_exceeded", checks=list(checks), rounds=MAX_ROUNDS)
        return evidence

    async def _ask(self, evidence: Evidence, op: Operation, ctx: CallContext) -> Answer:
        operation = op.name
        connector = self.routes.get(operation)
        if connector is None:
            answer: Answer = SourceUnavailable(operation, "no connector answers this operation")
            evidence.answers[(operation, op.key)] = answer
            return answer
        tally = evidence.tallies.setdefault(connector.name, SourceTally(connector.name))
        tally.calls += 1
        started = time.perf_counter()
        try:
            answer = await connector.fetch(Query(operation, op.params), ctx)
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
        evidence.answers[(operation, op.key)] = answer
        return answer
