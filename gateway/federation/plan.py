"""Planning, pure: from the evidence gathered so far to the next round of calls the requested checks want.

Each check's ``plan`` says what it wants given what is known; a round holds what is not answered yet, once
per (operation, key), in the checks' order. An empty round means every check has what it needs.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from gateway.federation.checks.protocol import Check, Operation
from gateway.federation.evidence import Evidence

log = structlog.get_logger(__name__)


def next_round(plans: Iterable[Check], evidence: Evidence) -> list[Operation]:
    """What the plans want that is not yet answered, once per (operation, key), in the plans' order."""
    wanted: dict[tuple[str, str], Operation] = {}
    answers = evidence.answers
    for check in plans:
        try:
            for op in check.plan(evidence):
                if op.name not in check.operations:  # (docs/checks.md: every operation its plan may ask)
                    log.error("check_plan_undeclared_operation", check=check.name, operation=op.name)
                    continue
                slot = (op.name, op.key)
                if slot not in answers and slot not in wanted:
                    wanted[slot] = op
        except Exception:  # a plug-in's bug: it asks for nothing more, and its evaluation says what it can
            log.exception("check_plan_crashed", check=check.name)
    return list(wanted.values())


def first_round(plans: Iterable[Check], evidence: Evidence) -> list[Operation]:
    """The first round: the subject's civil record first (it decides whether the subject exists), then what
    the plans want."""
    calls = next_round(plans, evidence)
    idcs = evidence.subject_idcs
    if idcs is None or ("person", idcs) in evidence.answers:
        return calls
    return [Operation("person", {"idcs": idcs})] + [op for op in calls if (op.name, op.key) != ("person", idcs)]
