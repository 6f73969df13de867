"""The RSU (Registre Social Unifié, run by the ANR) as a REST/JSON server over the synthetic population.

``GET /rsu/v1/members/{idcs}/registration`` answers the RSU registration of the household a person belongs
to: household id, registration and last-update dates, region, the living members' IDCS and the
socio-economic index (7 decimals). A deceased member is still answered for, but is no longer listed among
the members. A person whose household is not registered, or who is unknown, gets 404; a malformed
identifier 400, all as JSON. Signature checks and test controls come from ``rest_guard``.
"""

from __future__ import annotations

from aiohttp import web

from simulators.common import CONTEXT, SimulatorContext
from simulators.population import SocialRegistration, is_valid_idcs
from simulators.rest_server import json_error, rest_guard

PATH = "/rsu/v1/members/{idcs}/registration"


def to_json(found: SocialRegistration) -> dict[str, object]:
    """The RSU's JSON shape for one registration."""
    return {
        "idcs": found.idcs,
        "household": {
            "id": found.household_id,
            "registered_on": found.registered_on.isoformat(),
            "updated_on": found.updated_on.isoformat(),
            "region": found.region,
            "members": [{"idcs": member} for member in found.members],
            "socio_economic_index": found.socio_economic_index,
        },
    }


async def registration(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    idcs = request.match_info["idcs"]
    if not is_valid_idcs(idcs):
        return json_error(400, "bad_request", "idcs must be 10 digits with a valid check digit")
    found = ctx.population.social_registration(idcs)
    if found is None:
        return json_error(404, "not_found", "no registered household has a member with this idcs")
    return web.json_response(to_json(found))


def build_app(ctx: SimulatorContext) -> web.Application:
    app = web.Application(middlewares=[rest_guard])
    app[CONTEXT] = ctx
    app.router.add_get(PATH, registration)
    return app


__all__ = ["PATH", "build_app", "to_json"]
