"""Mapping of CNSS health insurance (AMO, SOAP) onto the ``coverage`` record.

Owns how the gateway's ``coverage`` operation (by ``idcs``) becomes a ``GetCoverage`` call
(``schemas/wsdl/health_amo.wsdl``) and how its reply becomes the canonical record of
``schemas/records/coverage.json`` (schemes and statuses in lower case). ``NOT_FOUND`` maps to None;
anything off-contract raises, and the connector reports the source unavailable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.soap import SoapOperation, boolean, found, optional_iso_date, text

_SCHEMES = {"AMO_TADAMON": "amo_tadamon", "AMO_CONTRIBUTORY": "amo_contributory", "NONE": "none"}
_STATUSES = {"ACTIVE": "active", "INACTIVE": "inactive"}


def _coverage_args(params: Mapping[str, str]) -> dict[str, Any]:
    return {"idcs": params["idcs"]}


def _coverage_record(reply: Any) -> dict[str, Any] | None:
    if not found(reply):
        return None
    c = reply.coverage
    if c is None:
        raise ValueError("FOUND without a coverage")
    return {
        "idcs": text(reply.idcs),
        "scheme": _SCHEMES[text(c.scheme)],
        "status": _STATUSES[text(c.coverageStatus)],
        "since": optional_iso_date(c.since),
        "severe_disability": boolean(c.severeDisability),
    }


OPERATIONS: dict[str, SoapOperation] = {
    "coverage": SoapOperation("GetCoverage", "coverage", _coverage_args, _coverage_record),
}

__all__ = ["OPERATIONS"]
