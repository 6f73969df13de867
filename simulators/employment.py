"""CNSS salary declarations as a REST/JSON server over the synthetic population.

``GET /cnss/v1/insured/{idcs}/declarations?from=YYYY-MM&to=YYYY-MM`` answers an insured person's employer
and monthly declarations over at most 24 months (inclusive). Never-insured or unknown people get 404;
malformed identifiers or periods 400, all as JSON. Signature checks and test controls come from
``rest_guard``.
"""

from __future__ import annotations

import re

from aiohttp import web

from simulators.common import CONTEXT, SimulatorContext
from simulators.population import is_valid_idcs
from simulators.rest_server import json_error, rest_guard

MAX_PERIOD_MONTHS = 24
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


def _month_number(text: str | None) -> int | None:
    """``YYYY-MM`` as a count of months since year 0, or None if malformed."""
    match = _MONTH.fullmatch(text or "")
    return int(match[1]) * 12 + int(match[2]) - 1 if match else None


async def declarations(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    idcs = request.match_info["idcs"]
    if not is_valid_idcs(idcs):
        return json_error(400, "bad_request", "idcs must be 10 digits with a valid check digit")
    first, last = request.query.get("from"), request.query.get("to")
    first_n, last_n = _month_number(first), _month_number(last)
    if first is None or last is None or first_n is None or last_n is None:
        return json_error(400, "bad_request", "from and to are required, as YYYY-MM")
    if first_n > last_n:
        return json_error(400, "bad_request", "from must not be after to")
    if last_n - first_n + 1 > MAX_PERIOD_MONTHS:
        return json_error(400, "bad_request", f"the period may cover at most {MAX_PERIOD_MONTHS} months")
    found = ctx.population.employment(idcs, first, last)
    if found is None:
        return json_error(404, "not_found", "no insured person with this idcs")
    return web.json_response({
        "idcs": found.idcs,
        "cnss_number": found.cnss_number,
        "employer": {"name": found.employer, "cnss_number": found.employer_cnss},
        "declarations": [
            {"month": d.month, "days": d.days, "salary_mad": d.salary} for d in found.declarations
        ],
    })


def build_app(ctx: SimulatorContext) -> web.Application:
    app = web.Application(middlewares=[rest_guard])
    app[CONTEXT] = ctx
    app.router.add_get("/cnss/v1/insured/{idcs}/declarations", declarations)
    return app


__all__ = ["MAX_PERIOD_MONTHS", "build_app"]
