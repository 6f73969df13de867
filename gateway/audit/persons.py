"""Whose data a verification read: the subject and every other person the administrations' answers were about,
so the access log can name each of them (``AccessRecord.co_subjects``) and each finds the access in their own
citizen access log (``gateway.citizen.view``). Only pseudonyms leave this module.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from connectors.base import Record
from gateway.audit.pseudonym import Pseudonymiser

if TYPE_CHECKING:
    from gateway.federation.executor import Evidence

IDCS = re.compile(r"[0-9]{10}")


def persons_read(evidence: Evidence) -> set[str]:
    """The IDCS of every person whose data an administration gave for this request: the subject, each person an
    answer was asked about (each child's enrolment and coverage, each spouse's declarations), and each member the
    family record lists (their birth date, whether alive: read too)."""
    read = {idcs for (_, idcs), answer in evidence.answers.items() if isinstance(answer, Record)}
    family = evidence.record("family", evidence.subject_idcs)
    if family is not None:
        for member in (*family.data.get("children", ()), *family.data.get("spouses", ())):
            if isinstance(member, dict) and isinstance(member.get("idcs"), str):
                read.add(member["idcs"])
    return {idcs for idcs in read if IDCS.fullmatch(idcs)}


def co_subjects(pseudonymiser: Pseudonymiser, evidence: Evidence) -> tuple[str, ...]:
    """The pseudonyms of the persons read other than the subject, sorted (the order says nothing of who is who)."""
    others = persons_read(evidence) - {evidence.subject_idcs}
    return tuple(sorted(pseudonymiser.pseudonym("idcs", idcs) for idcs in others))
