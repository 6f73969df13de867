"""A Python mapping module, the documented escape hatch: MASSAR's ``enrolment`` written as code, not TOML."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.rest import RestOperation, segment, with_query


def _path(params: Mapping[str, str]) -> str:
    return with_query(f"/massar/v1/pupils/{segment(params['idcs'])}/enrolment",
                      {"school_year": params.get("school_year")})


def _record(answer: Any) -> dict[str, Any]:
    # a computed field no declaration could express: the level upper-cased
    return {key: answer[key] for key in ("idcs", "massar_code", "school_year", "status", "school")} | {
        "level": str(answer["level"]).upper()}


OPERATIONS: dict[str, RestOperation] = {
    "enrolment": RestOperation(method="GET", path=_path, record_kind="enrolment", to_record=_record),
}
