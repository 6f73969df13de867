"""MASSAR, the education ministry's pupil register, as a REST/JSON server over the synthetic population.

``GET /massar/v1/pupils/{idcs}/enrolment?school_year=YYYY-YYYY`` answers a pupil's enrolment for a school
year (default: the current one). Unknown pupils get 404, malformed identifiers or years 400, all as JSON.
The shared REST guard (signature, test controls, JSON errors) lives in ``simulators/rest_server.py``.
"""

from __future__ import annotations

import dataclasses
import re

from aiohttp import web

from simulators.common import CONTEXT, SimulatorContext
from simulators.population import current_school_year, is_valid_idcs
from simulators.rest_server import json_error, rest_guard

_SCHOOL_YEAR = re.compile(r"([0-9]{4})-([0-9]{4})")


async def enrolment(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    idcs = request.match_info["idcs"]
    if not is_valid_idcs(idcs):
        return json_error(400, "bad_request", "idcs must be 10 digits with a valid check digit")
    school_year = request.query.get("school_year") or current_school_year(ctx.population.today)
    match = _SCHOOL_YEAR.fullmatch(school_year)
    if match is None or int(match[2]) != int(match[1]) + 1:
        return json_error(400, "bad_request", "school_year must look like 2025-2026")
    found = ctx.population.enrolment(idcs, school_year)
    if found is None:
        return json_error(404, "not_found", "no pupil with this idcs")
    return web.json_response(dataclasses.asdict(found))


def build_app(ctx: SimulatorContext) -> web.Application:
    app = web.Application(middlewares=[rest_guard])
    app[CONTEXT] = ctx
    app.router.add_get("/massar/v1/pupils/{idcs}/enrolment", enrolment)
    return app


__all__ = ["build_app", "json_error", "rest_guard"]
