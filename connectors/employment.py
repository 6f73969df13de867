"""CNSS salary declarations over REST: the ``declarations`` operation and its mapping to the record.

``declarations`` takes ``idcs``, ``from`` and ``to`` (``YYYY-MM``, inclusive, at most 24 months) and
yields a ``declarations`` record (``schemas/records/declarations.json``): the employer and the declared
days and salary per month. The person's own CNSS number is not kept: no rule needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.rest import RestOperation, segment, with_query


def _path(params: Mapping[str, str]) -> str:
    path = f"/cnss/v1/insured/{segment(params['idcs'])}/declarations"
    return with_query(path, {"from": params["from"], "to": params["to"]})


def _record(answer: Any) -> dict[str, Any]:
    return {
        "idcs": answer["idcs"],
        "employer": answer["employer"]["name"],
        "employer_cnss": answer["employer"]["cnss_number"],
        "months": [
            {"month": d["month"], "days": d["days"], "salary_mad": d["salary_mad"]}
            for d in answer["declarations"]
        ],
    }


OPERATIONS: dict[str, RestOperation] = {
    "declarations": RestOperation(method="GET", path=_path, record_kind="declarations", to_record=_record),
}
