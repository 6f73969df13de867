"""MASSAR (education ministry) over REST: the ``enrolment`` operation and its mapping to the record.

``enrolment`` takes ``idcs`` and an optional ``school_year`` (``YYYY-YYYY``; MASSAR's current year when
absent) and yields an ``enrolment`` record (``schemas/records/enrolment.json``). The pupil's region is
not kept: no rule needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.rest import RestOperation, segment, with_query


def _path(params: Mapping[str, str]) -> str:
    path = f"/massar/v1/pupils/{segment(params['idcs'])}/enrolment"
    return with_query(path, {"school_year": params.get("school_year")})


def _record(answer: Any) -> dict[str, Any]:
    return {
        "idcs": answer["idcs"],
        "massar_code": answer["massar_code"],
        "school_year": answer["school_year"],
        "status": answer["status"],
        "level": answer["level"],
        "school": answer["school"],
    }


OPERATIONS: dict[str, RestOperation] = {
    "enrolment": RestOperation(method="GET", path=_path, record_kind="enrolment", to_record=_record),
}
