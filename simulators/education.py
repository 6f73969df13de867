"""MASSAR, the education ministry's pupil register, as a REST/JSON server over the synthetic population.

``GET /massar/v1/pupils/{idcs}/enrolment?school_year=YYYY-YYYY`` answers a pupil's enrolment for a school
year (default: the current one). Unknown pupils get 404, malformed identifiers or years 400, all as JSON.

This module also owns ``rest_guard``, the middleware every REST simulator puts in front of its handlers:
it counts the call, verifies the gateway's signature (401 + ``WWW-Authenticate: Bearer`` otherwise),
applies ``SimulatorControl`` (delay, 503) and turns aiohttp's own HTTP errors into JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re

from aiohttp import web
from aiohttp.typedefs import Handler

from simulators.common import CONTEXT, OutboundAuthError, SimulatorContext, check_signature
from simulators.population import current_school_year, is_valid_idcs

_SCHOOL_YEAR = re.compile(r"([0-9]{4})-([0-9]{4})")


def json_error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The JSON error body every REST simulator answers with: ``{"error": ..., "message": ...}``."""
    return web.json_response({"error": error, "message": message}, status=status, headers=headers)


@web.middleware
async def rest_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    control = ctx.control
    control.calls += 1
    try:
        await check_signature(request, await request.read())
    except OutboundAuthError:
        return json_error(401, "unauthorized", "the call is not signed for this administration",
                          headers={"WWW-Authenticate": "Bearer"})
    if control.delay_s > 0:
        await asyncio.sleep(control.delay_s)
    if control.fail:
        return json_error(503, "unavailable", "the service is temporarily unavailable")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = "not_found" if exc.status == 404 else "bad_request" if exc.status < 500 else "server_error"
        return json_error(exc.status, error, exc.reason)


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
